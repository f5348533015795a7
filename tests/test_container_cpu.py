"""The image's entrypoint with --runtime openvino (Kubernetes' CPU overlay), for real: it writes the
CPU repository into the cache, becomes tritonserver (the embedded one here, pointed at our python
backend), serves masks, drains on SIGTERM, and a second start reuses the cached repository."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

from sam_triton.build.server.tritonserver import embedded_library_path, embedded_tritonserver, free_port, prepare_python_backend
from sam_triton.client import SamClient


def start_entrypoint(cache_dir: Path, backends: Path, log: Path):
    ports = {"grpc": free_port(), "http": free_port(), "metrics": free_port()}
    command = [
        sys.executable, "-m", "sam_triton.cli.container", "--runtime", "openvino", "--preset", "tiny",
        "--cache-dir", str(cache_dir), "--tritonserver", str(embedded_tritonserver()), "--",
        f"--backend-directory={backends}", "--grpc-address=127.0.0.1", f"--grpc-port={ports['grpc']}",
        "--http-address=127.0.0.1", f"--http-port={ports['http']}", "--metrics-address=127.0.0.1",
        f"--metrics-port={ports['metrics']}", "--exit-timeout-secs=20",
    ]  # fmt: skip
    env = dict(
        os.environ, LD_LIBRARY_PATH=str(embedded_library_path()), PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    )
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    return process, ports


def wait_ready(process, http_port: int, log: Path, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the entrypoint exited with {process.returncode}:\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/health/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"not ready within {timeout_s} s:\n{log.read_text()[-3000:]}")


def test_the_entrypoint_serves_the_cpu_runtime_and_reuses_it(tiny_onnx, cache_dir, images, tmp_path):
    backends = prepare_python_backend(tmp_path / "backends")
    for attempt in ("built", "reused"):
        log = tmp_path / f"{attempt}.log"
        process, ports = start_entrypoint(cache_dir, backends, log)
        try:
            wait_ready(process, ports["http"], log)
            with SamClient(f"127.0.0.1:{ports['grpc']}", transport="grpc") as client:
                client.set_image(images["truck"])
                masks, scores, _ = client.predict(point_coords=np.array([[500.0, 375.0]]), point_labels=np.array([1]))
            assert masks.shape == (3, *images["truck"].shape[:2]) and np.isfinite(scores).all()
            process.send_signal(signal.SIGTERM)  # the entrypoint became tritonserver: Triton drains and exits
            assert process.wait(timeout=60) == 0, log.read_text()[-3000:]
        finally:
            if process.poll() is None:
                process.kill()
        text = log.read_text()
        assert ("reusing the openvino repository" in text) == (attempt == "reused"), text[-3000:]
