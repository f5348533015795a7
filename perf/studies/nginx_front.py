"""nginx (Debian's 1.22) in front of a local cluster's replicas, configured as the issue's nginx
alternative to Envoy: ``hash $http_sam_route consistent``, ``grpc_pass``, passive failure detection
(``max_fails``/``fail_timeout``), ``grpc_next_upstream``. Only the gateway study uses it; the
project's gateway is Envoy (docs/studies/gateway.md says why)."""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from sam_triton.build.server.tritonserver import free_port

CONFIG = """worker_processes 1;
daemon off;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format routed '[$time_iso8601] $request_uri route=$http_sam_route upstream=$upstream_addr status=$status';
    access_log {run}/access.log routed;
    client_body_temp_path {run}/body;
    client_max_body_size 64m;
    upstream triton {{
        hash $http_sam_route consistent;
{servers}
    }}
    server {{
        listen 127.0.0.1:{port} http2;
        location / {{
            grpc_pass grpc://triton;
            grpc_next_upstream error timeout http_502 http_503 non_idempotent;
            grpc_read_timeout 120s;
            grpc_send_timeout 120s;
        }}
    }}
}}
"""


@dataclass(frozen=True)
class NginxCall:
    path: str
    route: str
    upstream: str  # the last replica tried ('host:port')


class NginxFront:
    """nginx on a free loopback port in front of ``upstreams`` ('host:port')."""

    def __init__(self, upstreams: Sequence[str], run_dir: Path, *, fail_timeout_s: int = 10) -> None:
        self.run_dir = Path(run_dir)
        self.port = free_port()
        servers = "\n".join(f"        server {u} max_fails=1 fail_timeout={fail_timeout_s}s;" for u in upstreams)
        self.config = CONFIG.format(run=self.run_dir, servers=servers, port=self.port)
        self.process: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "NginxFront":
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            raise RuntimeError("nginx is not installed: apt-get install nginx-light (only the gateway study uses it)")
        (self.run_dir / "body").mkdir(parents=True, exist_ok=True)
        (self.run_dir / "nginx.conf").write_text(self.config)
        test = subprocess.run(
            [binary, "-t", "-p", str(self.run_dir), "-c", str(self.run_dir / "nginx.conf")], capture_output=True, text=True
        )
        if test.returncode != 0:
            raise RuntimeError(f"nginx -t refused the configuration:\n{test.stderr}")
        self.process = subprocess.Popen(
            [binary, "-p", str(self.run_dir), "-c", str(self.run_dir / "nginx.conf")], stderr=subprocess.DEVNULL
        )
        time.sleep(0.5)
        return self

    def calls(self) -> List[NginxCall]:
        out = []
        path = self.run_dir / "access.log"
        for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
            try:
                _, rest = line.split("] ", 1)
                uri, route, upstream, _status = rest.split(" ", 3) if ", " not in rest else _retried(rest)
            except ValueError:
                continue
            out.append(NginxCall(uri, route.removeprefix("route="), upstream.removeprefix("upstream=").split(", ")[-1]))
        return out

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)


def _retried(rest: str):
    """A retried call logs 'upstream=a, b': keep the whole list in one field."""
    uri, route, tail = rest.split(" ", 2)
    upstream, status = tail.rsplit(" ", 1)
    return uri, route, upstream, status
