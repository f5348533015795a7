"""Flags shared by several commands, declared once, and the options objects they become.

`build`, `perf` and the Docker entrypoint (`cli.container`) take the same model, limit, repository
and TensorRT flags from here, so a flag added to one is there for all of them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional, Sequence

from sam_triton.build.export.pipeline import ModelChoice
from sam_triton.build.export.quantize import DEFAULT_SCOPE, SCOPES
from sam_triton.build.models.presets import DEFAULT_SEED, PRESETS
from sam_triton.build.repository.assemble import DECODER_ENGINES, RUNTIMES, RepositoryOptions
from sam_triton.build.repository.openvino_options import PERFORMANCE_HINTS, OpenVinoOptions
from sam_triton.build.server.tritonserver import default_cache_dir, default_repository
from sam_triton.build.tensorrt.precision import DEFAULT_PRECISION, FP32_GROUPS, PrecisionChoice, parse_groups
from sam_triton.client import contract
from sam_triton.client.contract import DEFAULT_LIMITS, Limits

TENSORRT_FLAGS = ("fp32_groups", "workspace_mib", "builder_optimization_level", "timing_cache")
OPENVINO_FLAGS = ("performance_hint", "streams", "cpu_pinning", "int8_scope")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--checkpoint",
        type=Path,
        help="An official SAM checkpoint (.pth state dict of vit_b, vit_l or vit_h) or MobileSAM's mobile_sam.pt (vit_t).",
    )
    group.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="Seeded random weights of this architecture instead of a checkpoint (tests and benchmarks).",
    )
    parser.add_argument(
        "--model-type", choices=sorted(PRESETS), help="The checkpoint's architecture; inferred from its weights when omitted."
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="The seed of --preset's random weights.")
    parser.add_argument("--image", type=Path, help="The photo the ONNX check runs on (default: a photo from scikit-image).")
    parser.add_argument("--skip-check", action="store_true", help="Skip the ONNX Runtime check against SamPredictor (not recommended).")


def add_cache_argument(parser: argparse.ArgumentParser, *, default: Optional[Path] = None) -> None:
    where = str(default) if default else "$SAM_TRITON_CACHE or ~/.cache/sam-triton"
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=default,
        help=f"Where exports, downloads and the server's backend directory are cached (default: {where}).",
    )


def add_repository_argument(parser: argparse.ArgumentParser, text: str) -> None:
    """--repository; without it a command uses model_repository in the cache directory (``repository``)."""
    parser.add_argument(
        "--repository",
        type=Path,
        help=f"{text} (default: model_repository in the cache directory, i.e. ~/.cache/sam-triton/model_repository, $SAM_TRITON_CACHE/model_repository or under --cache-dir).",
    )


def repository(args: argparse.Namespace) -> Path:
    """--repository, or the one default build, demo, serve, perf and soak share."""
    return args.repository or default_repository(getattr(args, "cache_dir", None))


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=DEFAULT_LIMITS.max_batch_size,
        help="Triton's max_batch_size for every model: the most requests dynamic batching merges.",
    )
    parser.add_argument(
        "--max-prompts", type=int, default=DEFAULT_LIMITS.max_prompts, help="The most prompts (P) for one image in one decoder request."
    )
    parser.add_argument(
        "--max-points", type=int, default=DEFAULT_LIMITS.max_points, help="The most points (N) per prompt; a box counts as two points."
    )


def add_instance_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--encoder-instances", type=int, default=1, help="Instances of sam_encoder (instance_group count).")
    parser.add_argument("--decoder-instances", type=int, default=1, help="Instances of sam_decoder (instance_group count).")
    parser.add_argument(
        "--encoder-nice",
        type=int,
        default=None,
        help="The encoder's CPU priority (nice 0-19) on a python-model runtime, so that clicks preempt encodes on a"
        " shared CPU; default: 10 on the CPU, 0 on a GPU.",
    )


def add_session_arguments(parser: argparse.ArgumentParser) -> None:
    """sam_session's store (README "Sessions")."""
    parser.add_argument(
        "--session-store-mib",
        type=int,
        default=contract.DEFAULT_STORE_BYTES // 2**20,
        help="The most memory sam_session's store holds, in MiB (about 4.25 MiB per session); beyond, the least recently used go.",
    )
    parser.add_argument(
        "--session-idle-ttl-s",
        type=float,
        default=contract.DEFAULT_IDLE_TTL_S,
        help="Seconds after which a session nobody used is dropped.",
    )
    parser.add_argument(
        "--session-open-workers",
        type=int,
        default=contract.DEFAULT_SESSION_OPEN_WORKERS,
        help="sam_session's threads for opens (decoding an upload, then sam_encoder).",
    )
    parser.add_argument(
        "--session-click-workers",
        type=int,
        default=contract.DEFAULT_SESSION_CLICK_WORKERS,
        help="sam_session's threads for clicks (predict and close), apart from the opens' so a click never waits for"
        " an open; 0 runs every operation one at a time.",
    )


def add_precision_argument(
    parser: argparse.ArgumentParser, *, runtimes: Sequence[str] = tuple(RUNTIMES), default: Optional[str] = None
) -> None:
    choices = sorted({p for name in runtimes for p in RUNTIMES[name].precisions})
    parser.add_argument(
        "--precision",
        choices=choices,
        default=default,
        help="The models' precision. tensorrt: fp16 (the default) lets TensorRT run every layer in FP16, mixed keeps the --fp32-groups layers in FP32, fp32 builds FP32 engines. openvino and openvino-backend: fp32 (the default), or bf16 on CPUs with AMX or AVX-512 BF16; openvino also int8: the encoder quantized by NNCF (calibrated on scikit-image's photos; measure it on your checkpoint first: python -m sam_triton.perf.studies.fidelity --precisions fp32 int8 --models CHECKPOINT --photos ...), the decoder unchanged. python and onnxruntime run fp32.",
    )


def add_openvino_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("OpenVINO (--runtime openvino or openvino-backend, or --decoder-engine openvino)")
    group.add_argument(
        "--decoder-engine",
        choices=DECODER_ENGINES,
        help="What runs sam_decoder, when not the runtime's default: the openvino runtimes run it on ONNX Runtime FP32 (faster than OpenVINO FP32 in our measurements; see the README).",
    )
    group.add_argument(
        "--performance-hint",
        choices=PERFORMANCE_HINTS,
        help="OpenVINO's performance hint: latency (the default) runs each request on one stream using every thread, best at concurrency 1; throughput runs several streams at once (a batch is split across them), best under load.",
    )
    group.add_argument(
        "--streams",
        type=int,
        help="OpenVINO streams per instance (NUM_STREAMS); unset or 0 leaves the number to the performance hint. Threads per stream are --threads divided by the streams.",
    )
    group.add_argument(
        "--int8-scope",
        choices=sorted(SCOPES),
        help=f"With --precision int8: the encoder layers NNCF leaves in floating point (default {DEFAULT_SCOPE}: the first and last convolutions; none quantizes all it can).",
    )
    group.add_argument(
        "--cpu-pinning",
        action=argparse.BooleanOptionalAction,
        help="Pin OpenVINO's inference threads to cores (ENABLE_CPU_PINNING); unset leaves OpenVINO's default (pinned on Linux). Python-backend models only: Triton's openvino backend has no such parameter.",
    )


def add_tensorrt_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("TensorRT engines (--runtime tensorrt only)")
    group.add_argument(
        "--fp32-groups",
        help=f"With --precision mixed: a comma-separated list of layer groups to keep in FP32 ({', '.join(sorted(FP32_GROUPS))}), or 'none'. The default is the per-model choice in sam_triton.build.tensorrt.precision.DEFAULT_FP32_GROUPS.",
    )
    group.add_argument(
        "--workspace-mib",
        type=int,
        help="The most GPU memory, in MiB, TensorRT's builder may use for tactic workspace; 0 or unset leaves TensorRT's default (all of it).",
    )
    group.add_argument(
        "--builder-optimization-level",
        type=int,
        help="TensorRT's builder optimization level, 0 (fastest build) to 5 (most tactics tried); TensorRT's default is 3.",
    )
    group.add_argument(
        "--timing-cache",
        type=Path,
        help="A persistent TensorRT timing cache file, reused and updated by every build (default: tensorrt/timing.cache in the cache directory).",
    )
    group.add_argument(
        "--decoder-cuda-graphs",
        action="store_true",
        help="Let Triton capture CUDA graphs of sam_decoder at the common request shape (one graph per batch size).",
    )


def cache_dir(args: argparse.Namespace) -> Path:
    return args.cache_dir or default_cache_dir()


def model_choice(args: argparse.Namespace) -> ModelChoice:
    return ModelChoice(
        checkpoint=args.checkpoint,
        model_type=getattr(args, "preset", None) or getattr(args, "model_type", None),
        seed=getattr(args, "seed", DEFAULT_SEED),
    )


def limits(args: argparse.Namespace) -> Limits:
    return Limits(max_batch_size=args.max_batch_size, max_prompts=args.max_prompts, max_points=args.max_points)


def given(args: argparse.Namespace, names: Sequence[str]) -> List[str]:
    """The flags among ``names`` the user set."""
    return [f"--{name.replace('_', '-')}" for name in names if getattr(args, name, None) is not None]


def check_precision(args: argparse.Namespace) -> None:
    """--precision must be one the runtime offers."""
    allowed = RUNTIMES[args.runtime].precisions
    if args.precision is not None and args.precision not in allowed:
        raise ValueError(f"--precision {args.precision}: --runtime {args.runtime} offers {', '.join(allowed)}")


def openvino_options(args: argparse.Namespace) -> OpenVinoOptions:
    """The OpenVinoOptions of a build; OpenVINO flags where no model runs OpenVINO are refused."""
    runs_openvino = "openvino" in (RUNTIMES[args.runtime].engine, args.decoder_engine)
    flags = given(args, OPENVINO_FLAGS)
    if flags and not runs_openvino:
        raise ValueError(f"{', '.join(flags)}: OpenVINO options apply where a model runs OpenVINO (got --runtime {args.runtime})")
    if args.cpu_pinning is not None and not RUNTIMES[args.runtime].python_model:
        raise ValueError(
            f"--{'' if args.cpu_pinning else 'no-'}cpu-pinning: Triton's openvino backend has no pinning parameter;"
            " it applies to --runtime openvino (python-backend models)"
        )
    precision = args.precision if RUNTIMES[args.runtime].engine == "openvino" else None
    if args.int8_scope is not None and precision != "int8":
        raise ValueError("--int8-scope applies with --precision int8 only")
    return OpenVinoOptions(
        precision=precision or "fp32",
        int8_scope=args.int8_scope or DEFAULT_SCOPE,
        performance_hint=args.performance_hint or "latency",
        streams=args.streams or 0,
        cpu_pinning=args.cpu_pinning,
    )


def repository_options(args: argparse.Namespace) -> RepositoryOptions:
    """The RepositoryOptions the flags of `build` (or the container's subset of them) describe."""
    return RepositoryOptions(
        runtime=args.runtime,
        limits=limits(args),
        encoder_instances=args.encoder_instances,
        decoder_instances=args.decoder_instances,
        instance_kind=getattr(args, "instance_kind", None),
        intra_op_threads=getattr(args, "threads", 0),
        encoder_nice=getattr(args, "encoder_nice", None),
        decoder_cuda_graphs=args.decoder_cuda_graphs,
        decoder_engine=getattr(args, "decoder_engine", None),
        openvino=openvino_options(args) if hasattr(args, "performance_hint") else OpenVinoOptions(),
        session_store_bytes=getattr(args, "session_store_mib", contract.DEFAULT_STORE_BYTES // 2**20) * 2**20,
        session_idle_ttl_s=getattr(args, "session_idle_ttl_s", contract.DEFAULT_IDLE_TTL_S),
        session_open_workers=getattr(args, "session_open_workers", contract.DEFAULT_SESSION_OPEN_WORKERS),
        session_click_workers=getattr(args, "session_click_workers", contract.DEFAULT_SESSION_CLICK_WORKERS),
    )


def engine_options(args: argparse.Namespace):
    """The one EngineOptions of a TensorRT build; TensorRT flags on other runtimes are refused."""
    from sam_triton.build.tensorrt.engine import DEFAULT_OPTIMIZATION_LEVEL, EngineOptions

    flags = given(args, TENSORRT_FLAGS)
    if args.runtime != "tensorrt":
        if flags:
            raise ValueError(f"{', '.join(flags)}: TensorRT options apply to --runtime tensorrt only (got --runtime {args.runtime})")
        return None
    return EngineOptions(
        precision=precision_choice(args),
        workspace_mib=args.workspace_mib or 0,
        optimization_level=DEFAULT_OPTIMIZATION_LEVEL if args.builder_optimization_level is None else args.builder_optimization_level,
        timing_cache=args.timing_cache or cache_dir(args) / "tensorrt" / "timing.cache",
    )


def precision_choice(args: argparse.Namespace) -> PrecisionChoice:
    return PrecisionChoice(
        precision=args.precision or DEFAULT_PRECISION, fp32_groups=parse_groups(args.fp32_groups) if args.fp32_groups is not None else None
    )


def argv_of(parser: argparse.ArgumentParser, args: argparse.Namespace, *, skip: Sequence[str] = ()) -> List[str]:
    """The flags of ``parser`` that ``args`` sets away from their defaults, as a command line
    (so a command can record the `sam-triton build` that would rebuild what it made)."""
    argv: List[str] = []
    for action in parser._actions:  # argparse keeps no public list of a parser's actions
        if not action.option_strings or action.dest in skip or action.dest == "help":
            continue
        value = getattr(args, action.dest, None)
        if value is None or value == action.default:
            continue
        flag = max(action.option_strings, key=len)
        if isinstance(action, argparse.BooleanOptionalAction):
            argv.append(flag if value else flag.replace("--", "--no-", 1))
        elif action.nargs == 0:
            argv.append(flag)
        else:
            argv += [flag, str(value)]
    return argv
