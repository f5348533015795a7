"""Sessions against the gRPC transport on shaped links, and the session store's memory bound.

    python -m sam_triton.perf.studies.sessions_link --out docs/studies/sessions

Starts its own embedded tritonserver on the tiny preset (python runtime; ``--preset`` for
another preset, or a checkpoint's path: a trained model's masks are what a user's clicks carry).
For each link (``--links``: Mbit/s and round-trip ms, shaped in user space by perf's counting
proxy) and each transport (grpc, session) one client sets the truck photo
``--set-images`` times and clicks ``--clicks`` points; bytes are counted by the proxy, times are
wall clock per call (p50/p95). A click is ``predict(point, multimask_output=True)``: three masks at
the photo's size, upsampled by the client (grpc) or by the server (session). Then a second server
with a store of ``--store-mib`` opens ten times as many sessions as fit and reports the server's
RSS (tritonserver and its python stubs) against the cap. Writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from sam_triton.build.export.pipeline import ModelChoice, prepare_onnx
from sam_triton.build.models.presets import PRESETS
from sam_triton.build.repository.session_store import LOGITS_SLOT_BYTES
from sam_triton.build.server.tritonserver import default_cache_dir
from sam_triton.client import SamClient
from sam_triton.client.contract import EMBED_DIM, EMBED_SIZE, SESSION_MODEL
from sam_triton.client.images import load_image
from sam_triton.client.predictor.transforms import resize_image
from sam_triton.client.transport.sessions import png_bytes

from ..soak.process_tree import descendants, rss_bytes, tree_memory
from .session_server import command, machine, serve_python_repository, write_report
from .transports import click_points
from .wire_proxy import CountingProxy

PHOTOS = Path(__file__).resolve().parents[2] / "tests" / "images"
SESSION_BYTES = 4 * EMBED_DIM * EMBED_SIZE * EMBED_SIZE + LOGITS_SLOT_BYTES


def percentiles(seconds: Sequence[float]) -> Dict[str, float]:
    return {"p50_ms": 1000 * statistics.median(seconds), "p95_ms": 1000 * float(np.percentile(seconds, 95))}


def upload_sizes(photos: Sequence[Path]) -> Dict[str, Dict[str, Any]]:
    """Per photo: the file, a PNG of the photo and a PNG of SAM's resized image, in bytes."""
    sizes = {}
    for path in photos:
        image = load_image(path)
        sizes[path.name] = {
            "size": list(image.shape[:2]),
            "file_bytes": path.stat().st_size,
            "png_original_bytes": len(png_bytes(image)),
            "png_resized_bytes": len(png_bytes(resize_image(image))),
            "raw_encoder_input_bytes": 1024 * 1024 * 3,
        }
    return sizes


def measure_link(url: str, transport: str, mbit: float, rtt_ms: float, image: np.ndarray, clicks: Sequence[np.ndarray], set_images: int):
    host, port = url.rsplit(":", 1)
    proxy = CountingProxy(host, int(port), one_way_delay_s=rtt_ms / 2000, bandwidth_bps=mbit * 1e6)
    with proxy, SamClient(proxy.url, transport=transport, timeout_s=300) as client:
        client.set_image(image)  # warm: the first call's one-time costs (connections, the server's first open)
        set_image_s, up, down = [], [], []
        for _ in range(set_images):
            proxy.reset()
            start = time.perf_counter()
            client.set_image(image)
            set_image_s.append(time.perf_counter() - start)
            up.append(proxy.client_to_server)
            down.append(proxy.server_to_client)
        client.predict(point_coords=clicks[0], point_labels=np.array([1]))  # warm
        click_s, click_up, click_down = [], [], []
        for point in clicks:
            proxy.reset()
            start = time.perf_counter()
            client.predict(point_coords=point, point_labels=np.array([1]))
            click_s.append(time.perf_counter() - start)
            click_up.append(proxy.client_to_server)
            click_down.append(proxy.server_to_client)
        # what the same click costs with the link taken away: the compute share of the figures above
        return {
            "set_image": {**percentiles(set_image_s), "bytes_up": statistics.median(up), "bytes_down": statistics.median(down)},
            "click": {**percentiles(click_s), "bytes_up": statistics.median(click_up), "bytes_down": statistics.median(click_down)},
            "reopens": client.reopens if transport == "session" else 0,
        }


def loopback_clicks(url: str, transport: str, image: np.ndarray, clicks: Sequence[np.ndarray]) -> Dict[str, float]:
    """Click latency with no proxy at all: the compute each transport's click costs here."""
    with SamClient(url, transport=transport, timeout_s=300) as client:
        client.set_image(image)
        client.predict(point_coords=clicks[0], point_labels=np.array([1]))
        times = []
        for point in clicks:
            start = time.perf_counter()
            client.predict(point_coords=point, point_labels=np.array([1]))
            times.append(time.perf_counter() - start)
    return percentiles(times)


def session_stub(server_pid: int) -> int:
    """The pid of sam_session's python stub (its command line names the model's directory)."""
    for pid in descendants(server_pid):
        try:
            if f"/{SESSION_MODEL}/".encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    raise RuntimeError(f"no python stub of {SESSION_MODEL} under tritonserver {server_pid}")


def store_memory(repository_dir: Path, onnx_dir: Path, cache_dir: Path, store_mib: int, log_dir: Path) -> Dict[str, Any]:
    """Open 10x the store's capacity in sessions: the RSS of the server and of sam_session's stub
    (where the store lives) against the cap, from a baseline taken with one session opened and closed."""
    capacity = store_mib * 2**20 // SESSION_BYTES
    server = serve_python_repository(
        onnx_dir, repository_dir, cache_dir=cache_dir, log_path=log_dir / "store_memory.log", session_store_bytes=store_mib * 2**20
    )
    pid = server.process.pid
    try:
        data = png_bytes(np.full((64, 64, 3), 9, np.uint8))
        arrays = {"op": np.array([b"open"], np.object_), "image_file": np.array([data], np.object_)}
        with SamClient(server.config.grpc_url, transport="session") as client:
            first = client._infer(SESSION_MODEL, arrays, ("session_id",))["session_id"]  # first-use allocations
            client._infer(SESSION_MODEL, {"op": np.array([b"close"], np.object_), "session_id": first}, ("session_id",))
            stub = session_stub(pid)
            before, stub_before = tree_memory(pid).total_bytes, rss_bytes(stub)
            server_rss, stub_rss = [], []
            for index in range(10 * capacity):
                client._infer(SESSION_MODEL, arrays, ("session_id",))
                if (index + 1) % capacity == 0:
                    server_rss.append(tree_memory(pid).total_bytes)
                    stub_rss.append(rss_bytes(stub))
            after = tree_memory(pid)
    finally:
        server.stop()
    cap = store_mib * 2**20
    return {
        "store_mib": store_mib,
        "capacity_sessions": capacity,
        "opens": 10 * capacity,
        "server_rss_before_mib": before / 2**20,
        "server_rss_mib_after_each_capacity": [v / 2**20 for v in server_rss],
        "stub_rss_before_mib": stub_before / 2**20,
        "stub_rss_mib_after_each_capacity": [v / 2**20 for v in stub_rss],
        "server_growth_over_cap": (server_rss[-1] - before) / cap,
        "stub_growth_over_cap": (stub_rss[-1] - stub_before) / cap,
        "growth_after_first_fill_over_cap": (server_rss[-1] - server_rss[0]) / cap,
        "processes_after": after.describe(),
    }


def markdown(report: Dict[str, Any]) -> str:
    lines = [
        "# Sessions: bytes and latency on shaped links, and the store's memory bound",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}; model {report['preset']}"
        f"{' (seeded random weights)' if report['preset'] in PRESETS else ''}, python runtime, truck photo 1800x1200.",
        "",
        "## Uploads (bytes)",
        "",
        "| photo | size | file | PNG of the photo | PNG of SAM's resized image |",
        "|---|---|---|---|---|",
    ]
    for name, s in report["uploads"].items():
        lines.append(
            f"| {name} | {s['size'][1]}x{s['size'][0]} | {s['file_bytes']} | {s['png_original_bytes']} | {s['png_resized_bytes']} |"
        )
    lines += [
        "",
        "## Links",
        "",
        "| link | transport | set_image p50 / p95 ms | set_image up / down B | click p50 / p95 ms | click up / down B |",
        "|---|---|---|---|---|---|",
    ]
    for link, transports in report["links"].items():
        for transport, f in transports.items():
            s, c = f["set_image"], f["click"]
            lines.append(
                f"| {link} | {transport} | {s['p50_ms']:.0f} / {s['p95_ms']:.0f} | {s['bytes_up']:.0f} / {s['bytes_down']:.0f} |"
                f" {c['p50_ms']:.0f} / {c['p95_ms']:.0f} | {c['bytes_up']:.0f} / {c['bytes_down']:.0f} |"
            )
    lines += ["", "Click p50 without any proxy (the compute share): "]
    lines.append(", ".join(f"{t} {f['p50_ms']:.0f} ms" for t, f in report["loopback_click"].items()))
    lines += [
        "",
        "Reading these figures: a click's compute is mostly SAM's postprocess of three masks to the",
        "photo's 1800x1200 (a float32 matrix product and three taps per mask), done by the client with",
        "grpc and by the server with session, on the same 2 shared cores here. The seeded random weights of the",
        "presets draw noisy masks (blobs of a few pixels, ~145k runs per mask), so their COCO RLE is",
        "~140-180 KB a mask (encoded in ~30 ms, decoded in ~25 ms); a trained SAM's mask is a few blobs",
        "whose RLE is a few KB, which these weights cannot show (no checkpoint download on this machine).",
    ]
    m = report.get("store_memory")
    if m is None:
        return "\n".join(lines) + "\n"
    lines += [
        "",
        "## Store memory",
        "",
        "The store's own process (sam_session's stub) grows by the cap and then stays flat however many",
        "more sessions are opened; the server's total grows once, during the first fill, in the other",
        "python stubs (sam_encoder's, and the shared-memory pool the python backend maps into each stub,",
        "counted in every process that touched it), and stays flat after it.",
        "",
        f"A store of {m['store_mib']} MiB ({m['capacity_sessions']} sessions); {m['opens']} opens after a baseline"
        " (one session opened and closed).",
        "",
        f"- server RSS (tritonserver and its python stubs): {m['server_rss_before_mib']:.0f} MiB, then after each"
        f" capacity's worth of opens {', '.join(f'{v:.0f}' for v in m['server_rss_mib_after_each_capacity'])} MiB:"
        f" growth {100 * m['server_growth_over_cap']:.0f} % of the cap; after the first fill"
        f" {100 * m['growth_after_first_fill_over_cap']:.1f} %",
        f"- sam_session's stub (the store's process): {m['stub_rss_before_mib']:.0f} MiB, then"
        f" {', '.join(f'{v:.0f}' for v in m['stub_rss_mib_after_each_capacity'])} MiB:"
        f" growth {100 * m['stub_growth_over_cap']:.0f} % of the cap",
        f"- processes at the end: {m['processes_after']}",
        "",
    ]
    return "\n".join(lines) + "\n"


def parse_link(text: str) -> Tuple[float, float]:
    mbit, rtt = text.split("@")
    return float(mbit), float(rtt)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sam_triton.perf.studies.sessions_link", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="Write <out>.json and <out>.md.")
    parser.add_argument("--preset", default="tiny", help="The model to serve: a preset name (seeded random weights) or a checkpoint path.")
    parser.add_argument("--links", default="100@20,1000@1", help="Comma-separated links, each MBIT@RTT_MS.")
    parser.add_argument("--transports", default="grpc,session", help="Comma-separated transports to measure.")
    parser.add_argument("--clicks", type=int, default=10, help="Clicks per link and transport.")
    parser.add_argument("--set-images", type=int, default=3, help="set_image calls per link and transport.")
    parser.add_argument("--store-mib", type=int, default=64, help="The store of the memory run, in MiB; 0: no memory run.")
    parser.add_argument("--cache-dir", type=Path, default=None, help="The cache of exports and backends.")
    args = parser.parse_args(argv)
    cache_dir = args.cache_dir or default_cache_dir()
    work = cache_dir / "sessions_link"  # repositories and server logs: never next to the results
    work.mkdir(parents=True, exist_ok=True)
    onnx_dir, _ = prepare_onnx(ModelChoice.parse(args.preset), cache_dir=cache_dir)
    image = load_image(PHOTOS / "truck.jpg")
    clicks = click_points(image.shape[0], image.shape[1], args.clicks)
    report: Dict[str, Any] = {
        "command": command("sessions_link", argv),
        "machine": machine(),
        "preset": args.preset,
        "uploads": upload_sizes(sorted(PHOTOS.glob("*.jpg"))),
        "links": {},
    }
    server = serve_python_repository(onnx_dir, work / "model_repository", cache_dir=cache_dir, log_path=work / "tritonserver.log")
    transports: List[str] = args.transports.split(",")
    try:
        url = server.config.grpc_url
        for link in args.links.split(","):
            mbit, rtt_ms = parse_link(link)
            name = f"{mbit:g} Mbit/s, {rtt_ms:g} ms RTT"
            report["links"][name] = {}
            for transport in transports:
                report["links"][name][transport] = measure_link(url, transport, mbit, rtt_ms, image, clicks, args.set_images)
                print(name, transport, json.dumps(report["links"][name][transport]), flush=True)
        report["loopback_click"] = {t: loopback_clicks(url, t, image, clicks) for t in [*transports, "shm"]}
    finally:
        server.stop()
    if args.store_mib > 0:
        report["store_memory"] = store_memory(work / "store_repository", onnx_dir, cache_dir, args.store_mib, work)
    write_report(args.out, report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
