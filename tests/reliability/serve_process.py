"""`sam-triton serve` as a real process on free loopback ports (test helper)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sam_triton.build.server.tritonserver import free_port
from sam_triton.perf.soak.process_tree import descendants

SERVE_READY_S = 300


class Serve:
    """`sam-triton serve` as a real process on free loopback ports; always stopped."""

    def __init__(self, repository: Path, cache_dir: Path, log_dir: Path, *flags: str) -> None:
        self.ports = {name: free_port() for name in ("grpc", "http", "metrics")}
        self.url = f"127.0.0.1:{self.ports['grpc']}"
        self.http = f"http://127.0.0.1:{self.ports['http']}"
        self.out_path = log_dir / f"serve-{self.ports['grpc']}.out"
        self.log_path = log_dir / f"tritonserver-{self.ports['grpc']}.log"
        self.command = [
            sys.executable,
            "-m",
            "sam_triton.cli.main",
            "serve",
            "--repository",
            str(repository),
            "--grpc-port",
            str(self.ports["grpc"]),
            "--http-port",
            str(self.ports["http"]),
            "--metrics-port",
            str(self.ports["metrics"]),
            "--cache-dir",
            str(cache_dir),
            "--log-file",
            str(self.log_path),
            *flags,
        ]

    def __enter__(self) -> "Serve":
        with open(self.out_path, "w") as out:
            self.process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + SERVE_READY_S
        while "serving" not in self.output():
            assert self.process.poll() is None, f"serve exited early:\n{self.output()}"
            assert time.monotonic() < deadline, f"serve was not ready within {SERVE_READY_S} s:\n{self.output()}"
            time.sleep(0.2)
        return self

    def output(self) -> str:
        return self.out_path.read_text()

    def stop(self, timeout_s: float = 120) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def __exit__(self, *exc_info) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                for pid in reversed(descendants(self.process.pid)):  # tritonserver and its stubs first
                    os.kill(pid, signal.SIGKILL)
                self.process.kill()
        if exc_info[0] is not None:
            server_log = self.log_path.read_text(errors="replace")[-20000:] if self.log_path.exists() else "(none)"
            print(f"--- serve output ---\n{self.output()}\n--- tritonserver log ({self.log_path}) ---\n{server_log}")
