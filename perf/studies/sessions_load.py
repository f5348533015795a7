"""Clicks under encode load: a session's click latency while other sessions are opening, against idle.

    python -m sam_triton.perf.studies.sessions_load --out docs/studies/sessions_load

Starts its own embedded tritonserver on the tiny preset (python runtime). One client clicks
``--clicks`` times on the truck photo's session, first with nothing else running, then while
``--openers`` other clients open sessions in a loop (each open runs sam_encoder through BLS).
sam_session has one instance (its store lives there) and the python backend runs a non-decoupled
model's requests one at a time, so a click waits for the open ahead of it; the figures say how
long. Writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from sam_triton.build.export.pipeline import ModelChoice, prepare_onnx
from sam_triton.build.server.tritonserver import default_cache_dir
from sam_triton.client import SamClient
from sam_triton.client.images import load_image

from .session_server import command, machine, serve_python_repository, write_report
from .sessions_link import PHOTOS, percentiles
from .transports import click_points


def clicks_ms(client: SamClient, points: Sequence[np.ndarray]) -> List[float]:
    times = []
    for point in points:
        start = time.perf_counter()
        client.predict(point_coords=point, point_labels=np.array([1]))
        times.append(time.perf_counter() - start)
    return times


def measure(url: str, image: np.ndarray, clicks: int, openers: int) -> Dict[str, Any]:
    points = click_points(image.shape[0], image.shape[1], clicks)
    stop = threading.Event()
    opens: List[float] = []

    def open_loop() -> None:
        with SamClient(url, transport="session", timeout_s=300) as opener:
            while not stop.is_set():
                start = time.perf_counter()
                opener.set_image(image)
                opens.append(time.perf_counter() - start)

    with SamClient(url, transport="session", timeout_s=300) as client:
        client.set_image(image)
        client.predict(point_coords=points[0], point_labels=np.array([1]))
        idle = clicks_ms(client, points)
        threads = [threading.Thread(target=open_loop, daemon=True) for _ in range(openers)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # the openers are running
        loaded = clicks_ms(client, points)
        stop.set()
        for thread in threads:
            thread.join(300)
    return {"idle": percentiles(idle), "under_encode_load": percentiles(loaded), "opens_during": len(opens), "open": percentiles(opens)}


def markdown(report: Dict[str, Any]) -> str:
    idle, loaded, opened = report["idle"], report["under_encode_load"], report["open"]
    return (
        "# Clicks under encode load (sam_session)\n\n"
        f"Command: `{report['command']}`  \n"
        f"Machine: {report['machine']}; preset {report['preset']}, python runtime, truck photo; {report['openers']} clients"
        " opening sessions in a loop during the loaded clicks.\n\n"
        "| clicks | p50 ms | p95 ms |\n|---|---|---|\n"
        f"| idle | {idle['p50_ms']:.0f} | {idle['p95_ms']:.0f} |\n"
        f"| while sessions open | {loaded['p50_ms']:.0f} | {loaded['p95_ms']:.0f} |\n\n"
        f"Opens meanwhile: {report['opens_during']} (p50 {opened['p50_ms']:.0f} ms). Only the before figures:"
        " sam_session runs one request at a time (one instance holds the store; the python backend's async"
        " execute serves decoupled models only), so a click queues behind an open. Not yet done: a decoupled"
        " sam_session whose async execute awaits BLS (encodes and decodes interleaved), or a store shared by"
        " several instances.\n"
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sam_triton.perf.studies.sessions_load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="Write <out>.json and <out>.md.")
    parser.add_argument("--preset", default="tiny", help="The model (a preset name) to serve.")
    parser.add_argument("--clicks", type=int, default=20, help="Clicks idle and under load.")
    parser.add_argument("--openers", type=int, default=2, help="Clients opening sessions during the loaded clicks.")
    parser.add_argument("--cache-dir", type=Path, default=None, help="The cache of exports and backends.")
    args = parser.parse_args(argv)
    cache_dir = args.cache_dir or default_cache_dir()
    work = cache_dir / "sessions_load"
    onnx_dir, _ = prepare_onnx(ModelChoice(model_type=args.preset), cache_dir=cache_dir)
    server = serve_python_repository(onnx_dir, work / "model_repository", cache_dir=cache_dir, log_path=work / "tritonserver.log")
    try:
        figures = measure(server.config.grpc_url, load_image(PHOTOS / "truck.jpg"), args.clicks, args.openers)
    finally:
        server.stop()
    report = {
        "command": command("sessions_load", argv),
        "machine": machine(),
        "preset": args.preset,
        "openers": args.openers,
        **figures,
    }
    write_report(args.out, report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
