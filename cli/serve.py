"""`sam-triton serve`: a model repository served by tritonserver until Ctrl-C or SIGTERM, which drain it."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from . import arguments as a


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a.add_repository_argument(parser, "The model repository to serve.")
    parser.add_argument(
        "--host", default="127.0.0.1", help="The address to bind; the default serves this machine only. Use 0.0.0.0 to serve the network."
    )
    parser.add_argument("--grpc-port", type=int, default=8001, help="The gRPC port.")
    parser.add_argument("--http-port", type=int, default=8000, help="The HTTP port (also used for health checks).")
    parser.add_argument("--metrics-port", type=int, default=8002, help="The Prometheus metrics port.")
    parser.add_argument(
        "--tritonserver",
        type=Path,
        help="A tritonserver binary to run instead of the embedded one (e.g. /opt/tritonserver/bin/tritonserver).",
    )
    parser.add_argument("--exit-timeout", type=int, default=30, help="Seconds tritonserver waits for in-flight requests on shutdown.")
    parser.add_argument(
        "--unrestricted-api",
        action="append",
        default=[],
        choices=["shared-memory", "model-repository"],
        help="Open this Triton API to every client that reaches the server (repeatable). By default the shared-memory"
        " and model-repository APIs answer only requests carrying the server's key, which local clients read"
        " from a file only this user can read (see the README's Security section).",
    )
    parser.add_argument("--grpc-use-ssl", action="store_true", help="Serve gRPC over TLS (needs --grpc-server-cert and --grpc-server-key).")
    parser.add_argument(
        "--grpc-use-ssl-mutual", action="store_true", help="Serve gRPC over TLS and require client certificates signed by --grpc-root-cert."
    )
    parser.add_argument("--grpc-server-cert", type=Path, help="The server's PEM certificate (chain), for TLS.")
    parser.add_argument("--grpc-server-key", type=Path, help="The server's PEM private key, for TLS.")
    parser.add_argument("--grpc-root-cert", type=Path, help="The PEM root certificate client certificates must be signed by (mutual TLS).")
    parser.add_argument(
        "--grpc-header-forward-pattern", help="A regex of gRPC request headers Triton passes to the models as request parameters."
    )
    parser.add_argument("--ready-timeout", type=float, default=600.0, help="Seconds to wait for every model to be READY.")
    parser.add_argument("--log-file", type=Path, help="Where tritonserver's log goes (default: in the cache directory).")
    a.add_cache_argument(parser)


def run(args: argparse.Namespace) -> int:
    from sam_triton.build.server.restricted_apis import restricted
    from sam_triton.build.server.tritonserver import ServerConfig, TritonServer, models_the_embedded_server_cannot_run
    from sam_triton.client.transport.server_key import key_file

    config = ServerConfig(
        repository=args.repository,
        host=args.host,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        tritonserver=args.tritonserver,
        exit_timeout_s=args.exit_timeout,
        restricted_apis=restricted(args.unrestricted_api),
        grpc_use_ssl=args.grpc_use_ssl,
        grpc_use_ssl_mutual=args.grpc_use_ssl_mutual,
        grpc_server_cert=args.grpc_server_cert,
        grpc_server_key=args.grpc_server_key,
        grpc_root_cert=args.grpc_root_cert,
        grpc_header_forward_pattern=args.grpc_header_forward_pattern,
    )
    from sam_triton.build.repository.stale_plans import ensure_plans_fresh, tensorrt_models
    from sam_triton.build.tensorrt.engine import current_runtime

    # Before Triton loads anything; TensorRT and the GPU are looked at only for a repository with plans.
    runtime = current_runtime() if tensorrt_models(args.repository) else None
    plans = ensure_plans_fresh(args.repository, runtime=runtime)
    if plans and args.tritonserver is None:
        raise ValueError(
            f"{args.repository} holds TensorRT models ({', '.join(plans)}), which the embedded tritonserver (python backend"
            " only) cannot load: pass --tritonserver /opt/tritonserver/bin/tritonserver inside NVIDIA's Triton container (see the Dockerfile)"
        )
    foreign = models_the_embedded_server_cannot_run(args.repository) if args.tritonserver is None else {}
    if foreign:
        raise ValueError(
            f"{args.repository} holds models for Triton backends the embedded tritonserver (python backend only) lacks"
            f" ({', '.join(f'{model}: {kind}' for model, kind in foreign.items())}): pass --tritonserver"
            " /opt/tritonserver/bin/tritonserver inside NVIDIA's Triton container, or build --runtime openvino or python for the embedded server"
        )
    server = TritonServer(config, log_path=args.log_file, cache_dir=a.cache_dir(args))

    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.start(timeout_s=args.ready_timeout)
        keyed = f"; {', '.join(config.restricted_apis)} API key in {key_file(config.grpc_port)}" if config.restricted_apis else ""
        print(
            f"serving {args.repository} on gRPC {config.grpc_url}{' over TLS' if config.tls else ''} (HTTP {config.http_url}); log: {server.log_path}{keyed}",
            flush=True,
        )
        status = server.wait()
        print(f"tritonserver exited on its own with status {status}:\n{server.log_tail()}", file=sys.stderr)
        return status or 1
    except KeyboardInterrupt:
        print(f"shutting down: draining in-flight requests (at most {args.exit_timeout} s)", flush=True)
        status = server.stop()
        if status not in (0, None):
            late = f"did not finish draining within --exit-timeout {args.exit_timeout} s"
            how = f"{late} and was killed" if status == -signal.SIGKILL else f"exited with status {status}: it {late}"
            tail = "\n".join(server.log_tail().splitlines()[-4:])
            print(f"tritonserver {how}; requests still in flight were cut off. Its log ends:\n{tail}", file=sys.stderr)
            return 1
        return 0
    finally:
        server.stop()  # whatever happened above (even a failed print to a closed stdout), never leave it running
