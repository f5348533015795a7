"""The `sam-triton` command line: export, build, serve, segment, demo, perf, soak.

``main(argv)`` is separate from parsing so tests can call it; configuration flows from the flags
into one options object per command, never from globals.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from sam_triton.client import SamTritonError
from sam_triton.client import segment_command
from sam_triton.client.contract import DEFAULT_LIMITS, Limits
from sam_triton.perf import command as perf_command
from sam_triton.perf import soak_command

from .presets import DEFAULT_SEED, PRESETS
from .repository import DEFAULT_RUNTIME, RUNTIMES

log = logging.getLogger("sam_triton")


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--checkpoint", type=Path, help="An official SAM checkpoint (.pth state dict of vit_b, vit_l or vit_h).")
    group.add_argument("--preset", choices=sorted(PRESETS), help="Seeded random weights of this architecture instead of a checkpoint (tests and benchmarks).")
    parser.add_argument("--model-type", choices=sorted(PRESETS), help="The checkpoint's architecture; inferred from its weights when omitted.")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="The seed of --preset's random weights.")
    parser.add_argument("--image", type=Path, help="The photo the ONNX check runs on (default: a photo from scikit-image).")
    parser.add_argument("--skip-check", action="store_true", help="Skip the ONNX Runtime check against SamPredictor (not recommended).")


def _add_cache_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", type=Path, help="Where exports, downloads and the server's backend directory are cached (default: $SAM_TRITON_CACHE or ~/.cache/sam-triton).")


def _add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-batch-size", type=int, default=DEFAULT_LIMITS.max_batch_size, help="Triton's max_batch_size for every model: the most requests dynamic batching merges.")
    parser.add_argument("--max-prompts", type=int, default=DEFAULT_LIMITS.max_prompts, help="The most prompts (P) for one image in one decoder request.")
    parser.add_argument("--max-points", type=int, default=DEFAULT_LIMITS.max_points, help="The most points (N) per prompt; a box counts as two points.")


def _add_precision_argument(parser: argparse.ArgumentParser) -> None:
    from .repository import RUNTIMES

    choices = sorted({p for spec in RUNTIMES.values() for p in spec.precisions})
    parser.add_argument("--precision", choices=choices, help="The models' precision. tensorrt: fp16 (the default) lets TensorRT run every layer in FP16, mixed keeps the --fp32-groups layers in FP32, fp32 builds FP32 engines. openvino and openvino-backend: fp32 (the default), or bf16 on CPUs with AMX or AVX-512 BF16. python and onnxruntime run fp32.")


def _add_openvino_arguments(parser: argparse.ArgumentParser) -> None:
    from .openvino_options import PERFORMANCE_HINTS
    from .repository import DECODER_ENGINES

    group = parser.add_argument_group("OpenVINO (--runtime openvino or openvino-backend, or --decoder-engine openvino)")
    group.add_argument("--decoder-engine", choices=DECODER_ENGINES, help="What runs sam_decoder, when not the runtime's default: the openvino runtimes run it on ONNX Runtime FP32 (faster than OpenVINO FP32 in our measurements; see the README).")
    group.add_argument("--performance-hint", choices=PERFORMANCE_HINTS, help="OpenVINO's performance hint: latency (the default) runs each request on one stream using every thread, best at concurrency 1; throughput runs several streams at once (a batch is split across them), best under load.")
    group.add_argument("--streams", type=int, help="OpenVINO streams per instance (NUM_STREAMS); unset or 0 leaves the number to the performance hint. Threads per stream are --threads divided by the streams.")
    group.add_argument("--cpu-pinning", action=argparse.BooleanOptionalAction, help="Pin OpenVINO's inference threads to cores (ENABLE_CPU_PINNING); unset leaves OpenVINO's default (pinned on Linux). Python-backend models only: Triton's openvino backend has no such parameter.")


def _add_tensorrt_arguments(parser: argparse.ArgumentParser) -> None:
    from .precision import FP32_GROUPS

    group = parser.add_argument_group("TensorRT engines (--runtime tensorrt only)")
    group.add_argument("--fp32-groups", help=f"With --precision mixed: a comma-separated list of layer groups to keep in FP32 ({', '.join(sorted(FP32_GROUPS))}), or 'none'. The default is the per-model choice in sam_triton.build.precision.DEFAULT_FP32_GROUPS.")
    group.add_argument("--workspace-mib", type=int, help="The most GPU memory, in MiB, TensorRT's builder may use for tactic workspace; 0 or unset leaves TensorRT's default (all of it).")
    group.add_argument("--builder-optimization-level", type=int, help="TensorRT's builder optimization level, 0 (fastest build) to 5 (most tactics tried); TensorRT's default is 3.")
    group.add_argument("--timing-cache", type=Path, help="A persistent TensorRT timing cache file, reused and updated by every build (default: tensorrt/timing.cache in the cache directory).")
    group.add_argument("--decoder-cuda-graphs", action="store_true", help="Let Triton capture CUDA graphs of sam_decoder at the common request shape (one graph per batch size).")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sam-triton", description="Segment Anything on Triton Inference Server.")
    parser.add_argument("-v", "--verbose", action="store_true", help="Log debug messages.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    export = commands.add_parser("export", help="Export SAM to sam_encoder.onnx and sam_decoder.onnx, checked against SamPredictor.",
                                 description="Export a SAM checkpoint (or preset) to ONNX and check both graphs with ONNX Runtime against Meta's SamPredictor on a real photo; fails with the figures if they disagree.")
    _add_model_arguments(export)
    export.add_argument("--out", type=Path, required=True, help="The directory to write sam_encoder.onnx, sam_decoder.onnx and manifest.json into.")

    build = commands.add_parser("build", help="Export SAM and write a Triton model repository for a runtime.",
                                description="Export SAM (reusing a cached export of the same weights) and write the model repository: sam_encoder, sam_decoder and the sam ensemble.")
    _add_model_arguments(build)
    _add_cache_argument(build)
    _add_limit_arguments(build)
    build.add_argument("--runtime", choices=sorted(RUNTIMES), default=DEFAULT_RUNTIME,
                       help=f"The models' runtime (default: {DEFAULT_RUNTIME}). openvino: python-backend models running OpenVINO, the embedded CPU default; python: python-backend models running ONNX Runtime; onnxruntime and openvino-backend: Triton's own onnxruntime and openvino backends (NVIDIA's container); tensorrt: FP16 TensorRT engines on a GPU.")
    build.add_argument("--repository", type=Path, help="The model repository directory to write (default: model_repository in the cache directory, i.e. ~/.cache/sam-triton/model_repository, $SAM_TRITON_CACHE/model_repository or under --cache-dir).")
    build.add_argument("--onnx-dir", type=Path, help="Where to export the ONNX graphs (default: a cache directory keyed by the weights).")
    build.add_argument("--encoder-instances", type=int, default=1, help="Instances of sam_encoder (instance_group count).")
    build.add_argument("--decoder-instances", type=int, default=1, help="Instances of sam_decoder (instance_group count).")
    build.add_argument("--threads", type=int, default=0, help="Inference threads per instance (ONNX Runtime intra-op threads, OpenVINO INFERENCE_NUM_THREADS); 0 lets the runtime use every core.")
    build.add_argument("--instance-kind", choices=["KIND_CPU", "KIND_GPU"], help="Override the runtime's instance kind (e.g. KIND_GPU for onnxruntime in the NGC container).")
    _add_precision_argument(build)
    _add_openvino_arguments(build)
    _add_tensorrt_arguments(build)

    serve = commands.add_parser("serve", help="Serve a model repository with tritonserver until Ctrl-C or SIGTERM.",
                                description="Start tritonserver (the embedded one from nvidia-pytriton unless --tritonserver is given), wait until every model is READY, print the gRPC address, and shut down cleanly on Ctrl-C or SIGTERM.")
    serve.add_argument("--repository", type=Path, help="The model repository to serve (default: model_repository in the cache directory, i.e. ~/.cache/sam-triton/model_repository, $SAM_TRITON_CACHE/model_repository or under --cache-dir).")
    serve.add_argument("--host", default="127.0.0.1", help="The address to bind; the default serves this machine only. Use 0.0.0.0 to serve the network.")
    serve.add_argument("--grpc-port", type=int, default=8001, help="The gRPC port.")
    serve.add_argument("--http-port", type=int, default=8000, help="The HTTP port (also used for health checks).")
    serve.add_argument("--metrics-port", type=int, default=8002, help="The Prometheus metrics port.")
    serve.add_argument("--tritonserver", type=Path, help="A tritonserver binary to run instead of the embedded one (e.g. /opt/tritonserver/bin/tritonserver).")
    serve.add_argument("--exit-timeout", type=int, default=30, help="Seconds tritonserver waits for in-flight requests on shutdown.")
    serve.add_argument("--unrestricted-api", action="append", default=[], choices=["shared-memory", "model-repository"],
                       help="Open this Triton API to every client that reaches the server (repeatable). By default the shared-memory"
                            " and model-repository APIs answer only requests carrying the server's key, which local clients read"
                            " from a file only this user can read (see the README's Security section).")
    serve.add_argument("--grpc-use-ssl", action="store_true", help="Serve gRPC over TLS (needs --grpc-server-cert and --grpc-server-key).")
    serve.add_argument("--grpc-use-ssl-mutual", action="store_true", help="Serve gRPC over TLS and require client certificates signed by --grpc-root-cert.")
    serve.add_argument("--grpc-server-cert", type=Path, help="The server's PEM certificate (chain), for TLS.")
    serve.add_argument("--grpc-server-key", type=Path, help="The server's PEM private key, for TLS.")
    serve.add_argument("--grpc-root-cert", type=Path, help="The PEM root certificate client certificates must be signed by (mutual TLS).")
    serve.add_argument("--grpc-header-forward-pattern", help="A regex of gRPC request headers Triton passes to the models as request parameters.")
    serve.add_argument("--ready-timeout", type=float, default=600.0, help="Seconds to wait for every model to be READY.")
    serve.add_argument("--log-file", type=Path, help="Where tritonserver's log goes (default: in the cache directory).")
    _add_cache_argument(serve)

    segment = commands.add_parser("segment", help="Segment a photo with point and box prompts through a running server.",
                                  description="Send a photo and its prompts to a running server and write the mask PNGs, an overlay PNG and the scores.")
    segment_command.add_arguments(segment)

    demo = commands.add_parser("demo", help="The whole flow on the embedded CPU server: build, serve, segment a real photo.",
                               description="Build the embedded runtime's repository from $SAM_CHECKPOINT (or Meta's ViT-B, downloaded; or seeded random ViT-B weights where there is no network), start the embedded tritonserver, segment a photo with a point and a box, write masks and overlays, and stop.")
    weights = demo.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", type=Path, help="A SAM checkpoint (default: $SAM_CHECKPOINT, else Meta's ViT-B).")
    weights.add_argument("--preset", choices=sorted(PRESETS), help="Seeded random weights of this architecture instead of a checkpoint (tests; the masks are meaningless).")
    demo.add_argument("--seed", type=int, default=DEFAULT_SEED, help="The seed of --preset's random weights.")
    demo.add_argument("--image", type=Path, help="The photo to segment (default: scikit-image's cat photo).")
    demo.add_argument("--out", type=Path, default=Path("demo_out"), help="The directory for masks, overlays and scores.")
    demo.add_argument("--repository", type=Path, help="The model repository to build and serve (default: model_repository in the cache directory, i.e. ~/.cache/sam-triton/model_repository, $SAM_TRITON_CACHE/model_repository or under --cache-dir).")
    demo.add_argument("--runtime", choices=sorted(n for n, s in RUNTIMES.items() if s.python_model), default=DEFAULT_RUNTIME,
                      help=f"The embedded server's runtime (default: {DEFAULT_RUNTIME}): openvino runs the encoder on OpenVINO, python runs both models on ONNX Runtime.")
    demo.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="With --runtime openvino: fp32 (the default), or bf16 on CPUs with AMX or AVX-512 BF16 (faster, with the fidelity the README states).")
    _add_cache_argument(demo)

    perf = commands.add_parser("perf", help="Benchmark sam_encoder, sam_decoder and sam with perf_analyzer, against in-process baselines.",
                               description="Serve the repository (or use --url), run Triton's perf_analyzer over a concurrency sweep of each model with real photos and prompts, time ONNX Runtime and PyTorch in-process on the same model and requests, and write a report with tables, ratios and plots.")
    _add_model_arguments(perf)
    _add_cache_argument(perf)
    perf_command.add_arguments(perf)

    soak = commands.add_parser("soak", help="Load sam_decoder and sam with perf_analyzer for minutes: no failed request, flat memory, identical probe.",
                               description="Serve the repository on loopback, keep sam_decoder and the sam ensemble busy with perf_analyzer at a fixed concurrency, and check that no request fails, that the server's RSS (tritonserver and its python stubs) stays within a tolerance after the warm-up, and that a probe request's outputs are identical before and after.")
    soak_command.add_arguments(soak)
    _add_cache_argument(soak)
    return parser


def _cache_dir(args: argparse.Namespace) -> Path:
    from .tritonserver import default_cache_dir

    return args.cache_dir or default_cache_dir()


def _choice(args: argparse.Namespace):
    from .pipeline import ModelChoice

    return ModelChoice(checkpoint=args.checkpoint, model_type=args.preset or args.model_type, seed=args.seed)


def cmd_export(args: argparse.Namespace) -> int:
    from .pipeline import prepare_onnx

    out, manifest = prepare_onnx(_choice(args), cache_dir=Path(args.out), onnx_dir=args.out, check_image=args.image,
                                 check=not args.skip_check, force=True)
    print(f"wrote {out / 'sam_encoder.onnx'}, {out / 'sam_decoder.onnx'} and {out / 'manifest.json'}")
    if "check" in manifest:
        check = manifest["check"]
        print(f"ONNX Runtime vs SamPredictor on {check['image']}: embedding rel L2 {check['embedding_rel_l2']:.2e},"
              f" worst logits rel L2 {max(check['logits_rel_l2'].values()):.2e}, worst IoU error {max(check['iou_abs'].values()):.2e}")
    return 0


TENSORRT_FLAGS = ("fp32_groups", "workspace_mib", "builder_optimization_level", "timing_cache")
OPENVINO_FLAGS = ("performance_hint", "streams", "cpu_pinning")


def _given(args: argparse.Namespace, names: Sequence[str]) -> List[str]:
    return [f"--{name.replace('_', '-')}" for name in names if getattr(args, name) is not None]


def _check_precision(args: argparse.Namespace) -> None:
    """--precision must be one the runtime offers."""
    allowed = RUNTIMES[args.runtime].precisions
    if args.precision is not None and args.precision not in allowed:
        raise ValueError(f"--precision {args.precision}: --runtime {args.runtime} offers {', '.join(allowed)}")


def _openvino_options(args: argparse.Namespace):
    """The OpenVinoOptions of a build; OpenVINO flags where no model runs OpenVINO are refused."""
    from .openvino_options import OpenVinoOptions

    runs_openvino = "openvino" in (RUNTIMES[args.runtime].engine, args.decoder_engine)
    given = _given(args, OPENVINO_FLAGS)
    if given and not runs_openvino:
        raise ValueError(f"{', '.join(given)}: OpenVINO options apply where a model runs OpenVINO (got --runtime {args.runtime})")
    if args.cpu_pinning is not None and not RUNTIMES[args.runtime].python_model:
        raise ValueError(f"--{'' if args.cpu_pinning else 'no-'}cpu-pinning: Triton's openvino backend has no pinning parameter;"
                         " it applies to --runtime openvino (python-backend models)")
    precision = args.precision if RUNTIMES[args.runtime].engine == "openvino" else None
    return OpenVinoOptions(precision=precision or "fp32", performance_hint=args.performance_hint or "latency",
                           streams=args.streams or 0, cpu_pinning=args.cpu_pinning)


def _engine_options(args: argparse.Namespace):
    """The one EngineOptions of a `build --runtime tensorrt`; TensorRT flags on other runtimes are refused."""
    from .precision import DEFAULT_PRECISION, PrecisionChoice, parse_groups
    from .tensorrt_engine import DEFAULT_OPTIMIZATION_LEVEL, EngineOptions

    given = _given(args, TENSORRT_FLAGS)
    if args.runtime != "tensorrt":
        if given:
            raise ValueError(f"{', '.join(given)}: TensorRT options apply to --runtime tensorrt only (got --runtime {args.runtime})")
        return None
    return EngineOptions(
        precision=PrecisionChoice(precision=args.precision or DEFAULT_PRECISION,
                                  fp32_groups=parse_groups(args.fp32_groups) if args.fp32_groups is not None else None),
        workspace_mib=args.workspace_mib or 0,
        optimization_level=DEFAULT_OPTIMIZATION_LEVEL if args.builder_optimization_level is None else args.builder_optimization_level,
        timing_cache=args.timing_cache or _cache_dir(args) / "tensorrt" / "timing.cache",
    )


def cmd_build(args: argparse.Namespace) -> int:
    from .pipeline import prepare_onnx
    from .repository import RepositoryOptions, assemble

    _check_precision(args)
    options = RepositoryOptions(
        runtime=args.runtime,
        limits=Limits(max_batch_size=args.max_batch_size, max_prompts=args.max_prompts, max_points=args.max_points),
        encoder_instances=args.encoder_instances,
        decoder_instances=args.decoder_instances,
        instance_kind=args.instance_kind,
        intra_op_threads=args.threads,
        decoder_cuda_graphs=args.decoder_cuda_graphs,
        decoder_engine=args.decoder_engine,
        openvino=_openvino_options(args),
    )
    engine_options = _engine_options(args)
    if options.runs_openvino() and options.openvino.precision == "bf16":
        from .openvino_options import require_native_bf16

        require_native_bf16()  # fail fast, before a long export
    if args.runtime == "tensorrt":
        from .tensorrt_engine import require_tensorrt

        require_tensorrt()  # fail fast, before a long export
    onnx_dir, manifest = prepare_onnx(_choice(args), cache_dir=_cache_dir(args), onnx_dir=args.onnx_dir,
                                      check_image=args.image, check=not args.skip_check)
    if engine_options is None:
        assemble(args.repository, options, onnx_dir=onnx_dir)
    else:
        from .tensorrt_repository import build_tensorrt_repository, rebuild_command

        build_tensorrt_repository(repository=args.repository, onnx_dir=onnx_dir, manifest=manifest, repo_options=options,
                                  engine_options=engine_options, check_image=args.image, command=rebuild_command(args.argv))
    print(f"wrote the {args.runtime} model repository at {args.repository} ({manifest['source']})")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from sam_triton.client.server_key import key_file

    from .restricted_apis import restricted
    from .tritonserver import ServerConfig, TritonServer, models_the_embedded_server_cannot_run

    config = ServerConfig(
        repository=args.repository, host=args.host, grpc_port=args.grpc_port, http_port=args.http_port,
        metrics_port=args.metrics_port, tritonserver=args.tritonserver, exit_timeout_s=args.exit_timeout,
        restricted_apis=restricted(args.unrestricted_api), grpc_use_ssl=args.grpc_use_ssl,
        grpc_use_ssl_mutual=args.grpc_use_ssl_mutual, grpc_server_cert=args.grpc_server_cert,
        grpc_server_key=args.grpc_server_key, grpc_root_cert=args.grpc_root_cert,
        grpc_header_forward_pattern=args.grpc_header_forward_pattern,
    )
    from .engine_metadata import ensure_plans_fresh, tensorrt_models
    from .tensorrt_engine import current_runtime

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
    server = TritonServer(config, log_path=args.log_file, cache_dir=_cache_dir(args))

    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.start(timeout_s=args.ready_timeout)
        keyed = f"; {', '.join(config.restricted_apis)} API key in {key_file(config.grpc_port)}" if config.restricted_apis else ""
        print(f"serving {args.repository} on gRPC {config.grpc_url}{' over TLS' if config.tls else ''} (HTTP {config.http_url}); log: {server.log_path}{keyed}", flush=True)
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


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DemoConfig, run_demo

    _check_precision(args)
    if args.precision != "fp32":
        from .openvino_options import require_native_bf16

        require_native_bf16()
    summaries = run_demo(DemoConfig(out_dir=args.out, repository=args.repository, cache_dir=_cache_dir(args),
                                    checkpoint=args.checkpoint, preset=args.preset, seed=args.seed, image=args.image,
                                    runtime=args.runtime, precision=args.precision))
    for name, summary in summaries.items():
        scores = ", ".join(f"{s:.4f}" for s in summary["scores"])
        print(f"{name} prompt: predicted IoU {scores}; overlay {summary['overlay']}")
    return 0


COMMANDS = {
    "export": cmd_export,
    "build": cmd_build,
    "serve": cmd_serve,
    "segment": segment_command.run,
    "demo": cmd_demo,
    "perf": perf_command.run,
    "soak": soak_command.run,
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # the exact command, for reports
    if getattr(args, "repository", "") is None:  # build, serve, demo, perf, soak: one default for all
        from .tritonserver import default_repository

        args.repository = default_repository(args.cache_dir)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except (SamTritonError, ValueError, FileNotFoundError, RuntimeError) as exc:
        # Errors we raise carry their own explanation; a traceback would only hide it.
        print(f"sam-triton {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
