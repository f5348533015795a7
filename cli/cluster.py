"""`sam-triton cluster`: N tritonserver replicas of one repository behind the session-affine gateway (Envoy),
on this machine, until Ctrl-C or SIGTERM, which drain every replica."""

from __future__ import annotations

import argparse
import signal
import tempfile
from pathlib import Path

from . import arguments as a


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sam_triton.build.server.gateway import DEFAULT_CONFIG

    a.add_repository_argument(parser, "The model repository every replica serves.")
    parser.add_argument("--replicas", type=int, default=2, help="How many tritonservers to start (each on free loopback ports).")
    parser.add_argument("--host", default="127.0.0.1", help="The address the gateway binds; 0.0.0.0 serves the network.")
    parser.add_argument("--port", type=int, default=8001, help="The gateway's gRPC port (0: a free one).")
    parser.add_argument(
        "--gateway-config",
        type=Path,
        default=DEFAULT_CONFIG,
        help="Envoy's configuration: the one Kubernetes and compose.yaml use (its replicas' addresses and ports are swapped for loopback).",
    )
    parser.add_argument("--exit-timeout", type=int, default=30, help="Seconds each tritonserver waits for in-flight requests on shutdown.")
    parser.add_argument("--ready-timeout", type=float, default=600.0, help="Seconds to wait for every replica to be READY.")
    a.add_cache_argument(parser)


def watch(cluster, poll_s: float = 0.5) -> int:
    """Until the gateway dies (returns 1) or a signal arrives; a replica that dies is reported, and the
    gateway routes around it."""
    import time

    reported = set()
    while cluster.gateway.process.poll() is None:
        for name, server in zip(cluster.names, cluster.servers):
            if name not in reported and server is not None and not server.running:
                reported.add(name)
                print(
                    f"replica {name} exited with status {server.process.returncode}; the gateway routes its sessions elsewhere", flush=True
                )
        time.sleep(poll_s)
    print(f"the gateway exited with status {cluster.gateway.process.returncode}:\n{cluster.gateway.log_tail()}", flush=True)
    return 1


def run(args: argparse.Namespace) -> int:
    from sam_triton.build.server.cluster import Cluster, ClusterConfig

    config = ClusterConfig(
        repository=args.repository,
        replicas=args.replicas,
        host=args.host,
        port=args.port,
        gateway_config=args.gateway_config,
        exit_timeout_s=args.exit_timeout,
        ready_timeout_s=args.ready_timeout,
    )
    cache = a.cache_dir(args)
    (cache / "cluster").mkdir(parents=True, exist_ok=True)  # one folder per run: two clusters may run at once
    cluster = Cluster(config, run_dir=Path(tempfile.mkdtemp(prefix="run-", dir=cache / "cluster")), cache_dir=cache)

    def stop(signum: int, _frame: object) -> None:
        for each in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C or SIGTERM must not cut the drain short
            signal.signal(each, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        cluster.start()
        replicas = ", ".join(f"{name} {url}" for name, url in cluster.replica_urls.items())
        print(
            f"serving {args.repository} on gRPC {cluster.url} through the gateway (sessions routed on the"
            f" '{cluster.route_header}' header) to {len(cluster.names)} replicas: {replicas}; logs in {cluster.run_dir}",
            flush=True,
        )
        return watch(cluster)
    except KeyboardInterrupt:
        print(f"shutting down: draining every replica (at most {args.exit_timeout} s)", flush=True)
        statuses = cluster.stop()
        failed = {name: status for name, status in statuses.items() if status not in (0, None)}
        if failed:
            print(f"replicas that did not drain cleanly (exit status): {failed}", flush=True)
            return 1
        return 0
    finally:
        cluster.stop()
