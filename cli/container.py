"""The Docker image's entrypoint: TensorRT engines for the GPU it runs on (or, with ``--runtime
openvino``, the CPU repository), cached, then exec tritonserver.

Engines are specific to the GPU model and the TensorRT version, so the image ships none. On start
it computes a key from (GPU, compute capability, TensorRT version, checkpoint hash, precision and
FP32 groups, limits and repository options) and looks for ``<cache>/engines/<key>/model_repository``
in the mounted cache. A repository there whose plans pass the stale-plan check is reused; any other
is (re)built. With ``--repository`` a prebuilt repository is served as it is, or refused if stale.
Then this process becomes tritonserver (``os.execvp``), so signals reach Triton directly.

``--runtime openvino`` (Kubernetes' CPU overlay, any machine without a GPU) writes the embedded
default's repository, python-backend models running OpenVINO, into
``<cache>/repositories/<key>/model_repository`` keyed by weights, options and exporter, and marks
it complete only once written, so a pod killed mid-build rebuilds instead of serving half a
repository. Its python stubs import this image's venv (``tritonserver_environment``).

    docker run --gpus all -v $PWD/checkpoints:/checkpoints:ro -v sam-trt-cache:/cache -p 8001:8001 \\
        sam-triton --checkpoint /checkpoints/sam_vit_h_4b8939.pth [-- extra tritonserver flags]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import List, Optional, Sequence

from sam_triton.build.models.presets import DEFAULT_SEED, PRESETS
from sam_triton.build.repository.assemble import RepositoryOptions
from sam_triton.build.repository.openvino_options import OpenVinoOptions
from sam_triton.build.repository.stale_plans import StalePlanError, ensure_plans_fresh
from sam_triton.build.server.restricted_apis import RESTRICTABLE_APIS, restricted, restriction_args, server_key
from sam_triton.build.tensorrt.engine import EngineOptions
from sam_triton.build.tensorrt.engine_metadata import RuntimeIdentity
from sam_triton.build.tensorrt.precision import DEFAULT_FP32_GROUPS, DEFAULT_PRECISION

from . import arguments as a

log = logging.getLogger("sam_triton.container")

DEFAULT_CACHE = "/cache"


CONTAINER_ONLY = ("checkpoint", "preset", "seed", "runtime", "repository", "cache_dir", "tritonserver", "unrestricted_api")
CONTAINER_RUNTIMES = ("tensorrt", "openvino")
COMPLETE_MARKER = ".complete"


def build_parser() -> argparse.ArgumentParser:
    """The entrypoint's flags: `build --runtime tensorrt`'s own (from ``cli.arguments``), defaults from the environment."""
    parser = argparse.ArgumentParser(
        prog="sam-triton-container",
        description="Build (or reuse) TensorRT engines for this GPU in the cache, then exec tritonserver. Arguments after '--' go to tritonserver.",
    )
    parser.add_argument(
        "--checkpoint", type=Path, default=os.environ.get("SAM_CHECKPOINT"), help="The SAM checkpoint to serve (default: $SAM_CHECKPOINT)."
    )
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), help="Seeded random weights of this architecture instead of a checkpoint (tests, smoke runs)."
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="The seed of --preset's random weights.")
    parser.add_argument(
        "--runtime",
        choices=CONTAINER_RUNTIMES,
        default=os.environ.get("SAM_RUNTIME", "tensorrt"),
        help="tensorrt: engines for this GPU (the default, or $SAM_RUNTIME); openvino: the CPU repository (no GPU needed).",
    )
    parser.add_argument(
        "--repository",
        type=Path,
        help="Serve this prebuilt tensorrt repository instead of building one; it is refused if its plans are stale.",
    )
    a.add_cache_argument(parser, default=Path(os.environ.get("SAM_TRITON_CACHE", DEFAULT_CACHE)))
    a.add_precision_argument(parser, runtimes=CONTAINER_RUNTIMES, default=os.environ.get("SAM_PRECISION"))
    a.add_limit_arguments(parser)
    a.add_instance_arguments(parser)
    a.add_session_arguments(parser)
    a.add_tensorrt_arguments(parser)
    parser.add_argument("--tritonserver", default="tritonserver", help="The tritonserver binary to exec (default: the one on PATH).")
    parser.add_argument(
        "--unrestricted-api",
        action="append",
        default=[],
        choices=list(RESTRICTABLE_APIS),
        help="Open this Triton API to every client (repeatable). By default the shared-memory and model-repository"
        " APIs answer only requests carrying the key in $SAM_TRITON_API_KEY (a random key nobody knows when unset).",
    )
    return parser


def split_argv(argv: Sequence[str]) -> tuple:
    """(our arguments, tritonserver's arguments after '--')."""
    argv = list(argv)
    if "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1 :]
    return argv, []


def engine_cache_key(identity: RuntimeIdentity, weights: str, engine: EngineOptions, options: RepositoryOptions, exporter: str) -> str:
    """A short hash of everything an engine repository depends on; equal keys mean reusable engines.
    The timing cache only speeds a build up, so it is not part of the key."""
    groups = {model: list(engine.precision.groups_for(model)) for model in DEFAULT_FP32_GROUPS}
    text = json.dumps(
        {
            "runtime": asdict(identity),
            "weights": weights,
            "precision": engine.precision.precision,
            "fp32_groups": groups,
            "builder": {"workspace_mib": engine.workspace_mib, "optimization_level": engine.optimization_level},
            "repository": asdict(options),
            "exporter": exporter,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def rebuild_argv(args: argparse.Namespace, repository: Path) -> List[str]:
    """The `sam-triton build` arguments that make the same repository (recorded for stale-plan messages)."""
    return [
        "build",
        "--runtime",
        "tensorrt",
        "--checkpoint",
        str(args.checkpoint),
        "--repository",
        str(repository),
        "--precision",
        args.precision or DEFAULT_PRECISION,
        *a.argv_of(build_parser(), args, skip=CONTAINER_ONLY + ("precision",)),
    ]


def prepare_repository(args: argparse.Namespace, *, identity: Optional[RuntimeIdentity] = None) -> Path:
    """The repository to serve: a fresh cached one, or one built now. Raises with a clear reason otherwise.

    ``identity`` is this machine's TensorRT version and GPU (default: asked of TensorRT and CUDA).
    """
    from sam_triton.build.export.pipeline import exporter_id, prepare_onnx
    from sam_triton.build.repository.tensorrt_repository import build_tensorrt_repository, rebuild_command
    from sam_triton.build.tensorrt.engine import runtime_identity

    if args.runtime == "openvino":
        return prepare_cpu_repository(args)
    identity = identity or runtime_identity()
    if args.repository is not None:
        ensure_plans_fresh(args.repository, runtime=identity)
        return args.repository
    choice = model_choice(args)
    weights = choice.weights_id()
    options = a.repository_options(args)
    engine = a.engine_options(args)
    key = engine_cache_key(identity, weights, engine, options, exporter_id())
    if args.timing_cache is None:
        engine = replace(engine, timing_cache=Path(args.cache_dir) / "tensorrt" / f"timing-{key}.cache")
    repository = Path(args.cache_dir) / "engines" / key / "model_repository"
    try:
        ensure_plans_fresh(repository, expected_weights=weights, runtime=identity)
        if (repository / "sam_encoder" / "1" / "model.plan").is_file():
            log.info("reusing the engines in %s (key %s)", repository, key)
            return repository
    except StalePlanError as exc:
        log.info("building engines for %s: %s", identity.gpu_name, str(exc).splitlines()[0])
    onnx_dir, manifest = prepare_onnx(choice, cache_dir=Path(args.cache_dir))
    build_tensorrt_repository(
        repository=repository,
        onnx_dir=onnx_dir,
        manifest=manifest,
        repo_options=options,
        engine_options=engine,
        command=rebuild_command(rebuild_argv(args, repository)),
    )
    return repository


def model_choice(args: argparse.Namespace):
    from sam_triton.build.export.pipeline import ModelChoice

    if args.checkpoint is None and args.preset is None:
        raise ValueError("--checkpoint: no checkpoint given; mount one and pass --checkpoint /checkpoints/FILE.pth (or set SAM_CHECKPOINT)")
    return ModelChoice(checkpoint=None if args.preset else args.checkpoint, model_type=args.preset, seed=args.seed)


def prepare_cpu_repository(args: argparse.Namespace) -> Path:
    """The openvino repository of these weights and options: reused from the cache when complete, else written."""
    from sam_triton.build.export.pipeline import exporter_id, prepare_onnx
    from sam_triton.build.repository.assemble import assemble

    if args.repository is not None:
        return args.repository
    a.check_precision(args)
    choice = model_choice(args)
    # the container has no OpenVINO tuning flags: the precision is --precision's (fp32, bf16 or int8)
    options = replace(a.repository_options(args), openvino=OpenVinoOptions(precision=args.precision or "fp32"))
    text = json.dumps(
        {"weights": choice.weights_id(), "repository": asdict(options), "exporter": exporter_id()}, sort_keys=True, default=str
    )
    folder = Path(args.cache_dir) / "repositories" / hashlib.sha256(text.encode()).hexdigest()[:16]
    repository = folder / "model_repository"
    if (folder / COMPLETE_MARKER).is_file():
        log.info("reusing the openvino repository in %s", repository)
        return repository
    shutil.rmtree(repository, ignore_errors=True)  # what a start killed mid-build left
    onnx_dir, _manifest = prepare_onnx(choice, cache_dir=Path(args.cache_dir))
    assemble(repository, options, onnx_dir=onnx_dir)
    (folder / COMPLETE_MARKER).write_text(text)
    return repository


def tritonserver_environment(environ: Optional[dict] = None) -> dict:
    """The environment tritonserver runs in: python-backend stubs (a separate interpreter) must find
    this venv's packages (OpenVINO, ONNX Runtime, numpy), so its site-packages go on PYTHONPATH."""
    import sysconfig

    env = dict(os.environ if environ is None else environ)
    site = sysconfig.get_paths()["purelib"]
    env["PYTHONPATH"] = os.pathsep.join([site] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def tritonserver_command(args: argparse.Namespace, repository: Path, triton_args: Sequence[str], *, key: str) -> List[str]:
    """tritonserver's command line: no model control, the APIs of ``restricted_apis`` behind ``key``,
    then the user's own flags (after '--'). It binds every address: publishing ports is the container's choice."""
    return [
        args.tritonserver,
        f"--model-repository={repository}",
        "--strict-readiness=true",
        "--model-control-mode=none",
        *restriction_args(key=key, apis=restricted(args.unrestricted_api)),
        *triton_args,
    ]


def main(argv: Optional[Sequence[str]] = None) -> int:
    ours, triton_args = split_argv(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(ours)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        repository = prepare_repository(args)
    except PermissionError as exc:
        print(
            f"sam-triton container: error: {exc}: the cache must be writable by uid {os.getuid()};"
            " mount a named volume (-v sam-trt-cache:/cache) or chown the host folder",
            file=sys.stderr,
        )
        return 1
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        print(f"sam-triton container: error: {exc}", file=sys.stderr)
        return 1
    key = server_key()
    command = tritonserver_command(args, repository, triton_args, key=key)
    log.info("exec %s", " ".join(command).replace(key, "<key>"))
    sys.stdout.flush()
    os.execvpe(command[0], command, tritonserver_environment())
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
