"""A soak of sam_session: many clients opening, clicking and closing for a while; failures and RSS.

    python -m sam_triton.perf.studies.sessions_soak --out docs/studies/sessions_soak --duration-s 300

Starts its own embedded tritonserver on the tiny preset (python runtime). ``--concurrency``
threads each drive a ``SamClient(transport="session")``: set an image (one of the shared photos,
an open, closing the previous session), click 1 to 5 times, sometimes refine with the previous
mask, and now and then close the client and start a new one. Every error counts as a failure.
The RSS of tritonserver and its python stubs is sampled every ``--sample-s``. Writes
``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from sam_triton.build.export.pipeline import ModelChoice, prepare_onnx
from sam_triton.build.server.tritonserver import default_cache_dir
from sam_triton.client import SamClient
from sam_triton.client.contract import PREVIOUS_MASK
from sam_triton.client.images import load_image

from ..soak.process_tree import tree_memory
from .session_server import command, machine, serve_python_repository, write_report
from .sessions_link import PHOTOS


class Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ops: Dict[str, int] = {"open": 0, "click": 0, "refine": 0, "close": 0}
        self.failures: List[str] = []
        self.reopens = 0

    def add(self, op: str) -> None:
        with self.lock:
            self.ops[op] += 1


def worker(url: str, images: Sequence[np.ndarray], deadline: float, seed: int, counters: Counters) -> None:
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        try:
            with SamClient(url, transport="session", timeout_s=300) as client:
                for _ in range(rng.randint(1, 4)):
                    image = images[rng.randrange(len(images))]
                    client.set_image(image)
                    counters.add("open")
                    h, w = image.shape[:2]
                    for _ in range(rng.randint(1, 5)):
                        point = np.array([[rng.uniform(0, w - 1), rng.uniform(0, h - 1)]])
                        client.predict(point_coords=point, point_labels=np.array([1]))
                        counters.add("click")
                        if rng.random() < 0.3:
                            client.predict(point_coords=point, point_labels=np.array([1]), mask_input=PREVIOUS_MASK)
                            counters.add("refine")
                        if time.monotonic() >= deadline:
                            break
                    if time.monotonic() >= deadline:
                        break
                with counters.lock:
                    counters.reopens += client.reopens
            counters.add("close")
        except Exception as exc:  # every error is a failure of the soak
            with counters.lock:
                counters.failures.append(f"{type(exc).__name__}: {exc}"[:300])


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sam_triton.perf.studies.sessions_soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="Write <out>.json and <out>.md.")
    parser.add_argument("--duration-s", type=float, default=900.0, help="How long the load runs.")
    parser.add_argument("--concurrency", type=int, default=16, help="Client threads.")
    parser.add_argument("--sample-s", type=float, default=5.0, help="Seconds between RSS samples.")
    parser.add_argument("--cache-dir", type=Path, default=None, help="The cache of exports and backends.")
    args = parser.parse_args(argv)
    cache_dir = args.cache_dir or default_cache_dir()
    work = cache_dir / "sessions_soak"
    onnx_dir, _ = prepare_onnx(ModelChoice(model_type="tiny"), cache_dir=cache_dir)
    server = serve_python_repository(onnx_dir, work / "model_repository", cache_dir=cache_dir, log_path=work / "tritonserver.log")
    images = [load_image(p) for p in sorted(PHOTOS.glob("*.jpg"))]
    counters = Counters()
    rss: List[List[float]] = []
    try:
        pid = server.process.pid
        start = time.monotonic()
        deadline = start + args.duration_s
        threads = [
            threading.Thread(target=worker, args=(server.config.grpc_url, images, deadline, seed, counters), daemon=True)
            for seed in range(args.concurrency)
        ]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            rss.append([time.monotonic() - start, tree_memory(pid).total_bytes / 2**20])
            time.sleep(args.sample_s)
        for thread in threads:
            thread.join()
        ready = server.is_ready()
    finally:
        server.stop()
    middle = [v for t, v in rss if t >= args.duration_s / 3]
    report: Dict[str, Any] = {
        "command": command("sessions_soak", argv),
        "machine": machine(),
        "duration_s": args.duration_s,
        "concurrency": args.concurrency,
        "ops": counters.ops,
        "reopens": counters.reopens,
        "failures": len(counters.failures),
        "failure_samples": counters.failures[:10],
        "server_ready_after": ready,
        "rss_mib": rss,
        "rss_first_third_end_mib": middle[0] if middle else None,
        "rss_end_mib": rss[-1][1] if rss else None,
        "rss_max_after_first_third_mib": max(middle) if middle else None,
        "rss_median_after_first_third_mib": statistics.median(middle) if middle else None,
    }
    write_report(args.out, report, markdown(report))
    return 0 if report["failures"] == 0 else 1


def markdown(report: Dict[str, Any]) -> str:
    ops = ", ".join(f"{count} {op}s" for op, count in report["ops"].items())
    return (
        "# Soak of sam_session\n\n"
        f"Command: `{report['command']}`  \n"
        f"Machine: {report['machine']}; tiny preset, python runtime, the shared photos, default store (2 GiB).\n\n"
        f"{report['duration_s']:g} s at concurrency {report['concurrency']}: {ops}; {report['reopens']} re-opens;"
        f" **{report['failures']} failed**; server READY after: {report['server_ready_after']}.\n\n"
        f"Server RSS (tritonserver and its python stubs): {report['rss_mib'][0][1]:.0f} MiB at the start,"
        f" {report['rss_first_third_end_mib']:.0f} MiB after the first third, median"
        f" {report['rss_median_after_first_third_mib']:.0f} and max {report['rss_max_after_first_third_mib']:.0f} MiB"
        f" over the last two thirds, {report['rss_end_mib']:.0f} MiB at the end.\n"
        + ("\nFailures (first 10):\n\n" + "\n".join(f"- {f}" for f in report["failure_samples"]) + "\n" if report["failures"] else "")
    )


if __name__ == "__main__":
    sys.exit(main())
