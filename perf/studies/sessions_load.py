"""Clicks under encode load: a session's click latency while other sessions are opening, against idle.

    python -m sam_triton.perf.studies.sessions_load --out docs/studies/sessions_load

Starts its own embedded tritonserver on the tiny preset (python runtime), once per mode and
round, alternating (``MODES``): sam_session running one operation at a time
(``--session-click-workers 0``, the model before its lanes: a click waits for the open ahead of
it), with its lanes (opens and clicks on threads of their own), and with the lanes and the
encoder's stub at a lower CPU priority (``--encoder-nice``, 10 by default on the CPU). In each,
one client clicks ``--clicks`` times on the truck photo's session, first with nothing else
running, then while ``--openers`` other clients open sessions in a loop (each open runs
sam_encoder through BLS). Writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np

from sam_triton.build.export.pipeline import ModelChoice, prepare_onnx
from sam_triton.build.repository.assemble import DEFAULT_ENCODER_NICE
from sam_triton.build.server.tritonserver import default_cache_dir
from sam_triton.client import SamClient, contract
from sam_triton.client.images import load_image

from .session_server import command, machine, serve_python_repository, write_report
from .sessions_link import PHOTOS, percentiles
from .transports import click_points


def seconds_each(call: Callable[[Any], Any], args: Iterable[Any]) -> List[float]:
    """Wall-clock seconds of ``call(arg)`` for each arg, in turn."""
    times = []
    for arg in args:
        start = time.perf_counter()
        call(arg)
        times.append(time.perf_counter() - start)
    return times


def measure(url: str, image: np.ndarray, clicks: int, openers: int) -> Dict[str, List[float]]:
    """One server's samples in seconds: clicks idle and under encode load, opens meanwhile and alone."""
    points = click_points(image.shape[0], image.shape[1], clicks)
    stop = threading.Event()
    opens: List[float] = []

    def open_loop() -> None:
        with SamClient(url, transport="session", timeout_s=300) as opener:
            while not stop.is_set():
                start = time.perf_counter()
                opener.set_image(image)
                opens.append(time.perf_counter() - start)

    with SamClient(url, transport="session", timeout_s=300) as opener:
        opener.set_image(image)  # warm
        alone = seconds_each(lambda _: opener.set_image(image), range(3))
    with SamClient(url, transport="session", timeout_s=300) as client:

        def click(point: np.ndarray) -> None:
            client.predict(point_coords=point, point_labels=np.array([1]))

        client.set_image(image)
        click(points[0])
        idle = seconds_each(click, points)
        threads = [threading.Thread(target=open_loop, daemon=True) for _ in range(openers)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # the openers are running
        loaded = seconds_each(click, points)
        stop.set()
        for thread in threads:
            thread.join(300)
    return {"idle_s": idle, "loaded_s": loaded, "open_s": opens, "open_alone_s": alone}


#: mode -> RepositoryOptions fields: before (one operation at a time, the encoder at the server's
#: priority), the lanes alone, and the lanes with the encoder's default and lowest CPU priority.
MODES: Dict[str, Dict[str, int]] = {
    "one at a time": {"session_click_workers": 0, "encoder_nice": 0},
    "lanes": {"session_click_workers": contract.DEFAULT_SESSION_CLICK_WORKERS, "encoder_nice": 0},
    f"lanes, encoder nice {DEFAULT_ENCODER_NICE} (default)": {
        "session_click_workers": contract.DEFAULT_SESSION_CLICK_WORKERS,
        "encoder_nice": DEFAULT_ENCODER_NICE,
    },
    "lanes, encoder nice 19": {"session_click_workers": contract.DEFAULT_SESSION_CLICK_WORKERS, "encoder_nice": 19},
}


def summary(rounds: List[Dict[str, List[float]]]) -> Dict[str, Any]:
    """One mode's figures over all its rounds' samples."""

    def merged(key: str) -> List[float]:
        return [t for r in rounds for t in r[key]]

    return {
        "idle": percentiles(merged("idle_s")),
        "under_encode_load": percentiles(merged("loaded_s")),
        "open": percentiles(merged("open_s")),
        "open_alone": percentiles(merged("open_alone_s")),
        "opens_during": len(merged("open_s")),
    }


def markdown(report: Dict[str, Any]) -> str:
    lines = [
        "# Clicks under encode load (sam_session)",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}; preset {report['preset']}, python runtime, truck photo; {report['openers']} clients"
        f" opening sessions in a loop during the loaded clicks; {report['rounds']} rounds, the modes alternating,"
        " a fresh server each.",
        "",
        "| sam_session | idle click p50 / p95 ms | click while sessions open p50 / p95 ms | opens meanwhile | open p50 ms meanwhile | open p50 ms alone |",
        "|---|---|---|---|---|---|",
    ]
    for mode, f in report["modes"].items():
        idle, loaded, opened = f["idle"], f["under_encode_load"], f["open"]
        lines.append(
            f"| {mode} | {idle['p50_ms']:.0f} / {idle['p95_ms']:.0f} |"
            f" {loaded['p50_ms']:.0f} / {loaded['p95_ms']:.0f} | {f['opens_during']} | {opened['p50_ms']:.0f} |"
            f" {f['open_alone']['p50_ms']:.0f} |"
        )
    lines += [
        "",
        "One at a time, a click that arrives during an open waits for it (the python backend hands a",
        "non-decoupled instance its next request when execute returns). With lanes, execute hands each",
        "request to a thread of its lane and returns at once; the lane answers through the request's",
        "response sender, so a click runs sam_decoder while the open waits for sam_encoder. On these 2",
        "cores that alone does not make clicks faster: the encode and the click then share the cores",
        "instead of taking turns. A lower CPU priority for the encoder's stub (its nice value, which its",
        "inference threads inherit) lets the click's work preempt the encode: clicks near their idle",
        "latency, opens slower while clicks run (nice weighs only threads that compete for a core: the",
        "last column, an open with nothing else running).",
        "",
    ]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sam_triton.perf.studies.sessions_load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="Write <out>.json and <out>.md.")
    parser.add_argument("--preset", default="tiny", help="The model (a preset name) to serve.")
    parser.add_argument("--clicks", type=int, default=20, help="Clicks idle and under load, per round and mode.")
    parser.add_argument("--openers", type=int, default=2, help="Clients opening sessions during the loaded clicks.")
    parser.add_argument("--rounds", type=int, default=2, help="Rounds, each serving every mode once.")
    parser.add_argument("--cache-dir", type=Path, default=None, help="The cache of exports and backends.")
    args = parser.parse_args(argv)
    cache_dir = args.cache_dir or default_cache_dir()
    work = cache_dir / "sessions_load"
    onnx_dir, _ = prepare_onnx(ModelChoice(model_type=args.preset), cache_dir=cache_dir)
    image = load_image(PHOTOS / "truck.jpg")
    rounds: Dict[str, List[Dict[str, List[float]]]] = {mode: [] for mode in MODES}
    for round_index in range(args.rounds):
        for mode, options in MODES.items():
            server = serve_python_repository(
                onnx_dir, work / "model_repository", cache_dir=cache_dir, log_path=work / "tritonserver.log", **options
            )
            try:
                rounds[mode].append(measure(server.config.grpc_url, image, args.clicks, args.openers))
            finally:
                server.stop()
            print(f"round {round_index + 1} {mode}: {percentiles(rounds[mode][-1]['loaded_s'])}", flush=True)
    report = {
        "command": command("sessions_load", argv),
        "machine": machine(),
        "preset": args.preset,
        "openers": args.openers,
        "rounds": args.rounds,
        "modes": {mode: {"options": MODES[mode], **summary(r)} for mode, r in rounds.items()},
    }
    write_report(args.out, report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
