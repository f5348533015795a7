"""N tritonserver replicas of one repository behind the session-affine gateway, on this machine.

What ``sam-triton cluster`` runs for demos and what the tests kill and restart: each replica is a
plain ``TritonServer`` on free loopback ports, named like the Kubernetes StatefulSet's pods
(``triton-0``, ``triton-1``, ...) so the gateway hashes sessions to the same names here and there.
"""

from __future__ import annotations

import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from . import gateway as gw
from .tritonserver import ServerConfig, TritonServer, free_port

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ClusterConfig:
    """``replicas`` servers of ``repository`` (settings from ``server``, ports chosen free) and a
    gateway on ``host:port`` configured from ``gateway_config``."""

    repository: Path
    replicas: int = 2
    host: str = "127.0.0.1"
    port: int = 8001
    gateway_config: Path = gw.DEFAULT_CONFIG
    exit_timeout_s: int = 30
    ready_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError(f"replicas: got {self.replicas}; expected at least 1")


class Cluster:
    """Start with ``start()`` (replicas in parallel, then the gateway once it sees them all healthy),
    stop with ``stop()`` (replicas drain in parallel). ``kill(i)`` / ``terminate(i)`` / ``restart(i)``
    act on one replica for failure tests; its ports stay the same, so the gateway's endpoint returns."""

    def __init__(self, config: ClusterConfig, *, run_dir: Path, cache_dir: Optional[Path] = None, **server_settings) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.cache_dir = cache_dir
        gateway_file = gw.load(config.gateway_config)
        names = gw.hash_keys(gateway_file)
        if config.replicas > len(names):
            raise ValueError(
                f"replicas: got {config.replicas}; the gateway configuration {config.gateway_config} names {len(names)} ({names[-1]} is the last)"
            )
        self.names = names[: config.replicas]
        self.route_header = gw.route_header(gateway_file)
        self.server_configs = [
            ServerConfig.on_free_ports(config.repository, exit_timeout_s=config.exit_timeout_s, **server_settings) for _ in self.names
        ]
        self.servers: List[Optional[TritonServer]] = [None] * len(self.names)
        upstreams = [gw.Upstream(name, c.host, c.grpc_port) for name, c in zip(self.names, self.server_configs)]
        local = gw.local_config(
            gateway_file,
            upstreams,
            host=config.host,
            port=config.port or free_port(config.host),
            admin_port=free_port(),
            access_log=self.run_dir / "access.log",
        )
        self.gateway = gw.Gateway(local, run_dir=self.run_dir)

    @property
    def url(self) -> str:
        return self.gateway.url

    @property
    def replica_urls(self) -> Dict[str, str]:
        """replica name -> its own gRPC address (bypassing the gateway)."""
        return {name: c.grpc_url for name, c in zip(self.names, self.server_configs)}

    def _new_server(self, index: int) -> TritonServer:
        return TritonServer(self.server_configs[index], log_path=self.run_dir / f"{self.names[index]}.log", cache_dir=self.cache_dir)

    def _start_replica(self, index: int) -> TritonServer:
        server = self._new_server(index)
        self.servers[index] = server
        return server.start(timeout_s=self.config.ready_timeout_s)

    def start(self) -> "Cluster":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            with ThreadPoolExecutor(len(self.names)) as pool:
                list(pool.map(self._start_replica, range(len(self.names))))
            self.gateway.start()
            self.gateway.wait_for_health({c.grpc_url: True for c in self.server_configs})
        except BaseException:
            self.stop()
            raise
        log.info("cluster of %d replicas behind %s", len(self.names), self.url)
        return self

    def kill(self, index: int) -> None:
        """SIGKILL replica ``index`` and its python stubs (a crash: nothing drains)."""
        server = self.servers[index]
        if server is not None and server.process is not None and server.running:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait()

    def terminate(self, index: int) -> Optional[int]:
        """SIGTERM replica ``index`` and wait while it drains (a rolling update, a scale-down)."""
        server = self.servers[index]
        return server.stop() if server is not None else None

    def restart(self, index: int, *, wait_for_gateway: bool = True) -> None:
        """Start replica ``index`` again on its old ports (READY when this returns) and, unless told not
        to, wait until the gateway counts it healthy."""
        self._start_replica(index)
        if wait_for_gateway:
            self.gateway.wait_for_health({self.server_configs[index].grpc_url: True})

    def stop(self) -> Dict[str, Optional[int]]:
        """Drain every replica in parallel (the gateway still carries their answers back), then stop the
        gateway; replica name -> exit status."""
        with ThreadPoolExecutor(len(self.names)) as pool:
            statuses = list(pool.map(lambda s: s.stop() if s is not None else None, self.servers))
        self.gateway.stop()
        return dict(zip(self.names, statuses))

    def __enter__(self) -> "Cluster":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
