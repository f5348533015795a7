"""TensorRT engines from the exported ONNX graphs, with TensorRT 10's Python API (needs a GPU).

TensorRT is imported lazily: everything else in sam_triton.build works without it. One engine is
one optimization profile (``tensorrt_profiles``), built in FP16 by default, with the layers of
the chosen groups pinned to FP32 for ``--precision mixed`` (``precision``), a persistent timing
cache, and the workspace limit and builder optimization level as options. The trtexec equivalent
of a build is ``trtexec_command``.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Iterable, List, Optional, Set, Tuple, Union

from sam_triton.client.contract import Limits

from .engine_metadata import RuntimeIdentity
from .precision import PrecisionChoice, select_fp32_nodes
from .profiles import model_profiles, trtexec_shape_flags

if TYPE_CHECKING:
    # PyPI's tensorrt-stubs (.tools/typing) for the checker; at run time each function imports
    # tensorrt after require_tensorrt() said where to get it.
    import tensorrt as trt

log = logging.getLogger(__name__)


class TensorRTUnavailableError(RuntimeError):
    """TensorRT's Python package is not importable here."""


class EngineBuildError(RuntimeError):
    """TensorRT could not parse a graph or build an engine; the message carries TensorRT's reasons."""


INSTALL_HINT = (
    "TensorRT is not installed. Build TensorRT engines where TensorRT and an NVIDIA GPU are available:"
    " inside NVIDIA's Triton container (nvcr.io/nvidia/tritonserver:<yy.mm>-py3, which ships TensorRT;"
    " see the Dockerfile), or on a GPU machine after 'pip install tensorrt' from NVIDIA's index"
    " (pip install --extra-index-url https://pypi.nvidia.com tensorrt). The onnxruntime and python"
    " runtimes need no TensorRT."
)

#: TensorRT's own default; 0 (fastest build) .. 5 (most tactics tried).
DEFAULT_OPTIMIZATION_LEVEL = 3
_ONNX_LAYER = re.compile(r"\[ONNX Layer: ([^|\]]+?)\s*(?:\||\])")


def require_tensorrt() -> ModuleType:
    """Import and return the ``tensorrt`` module, or fail fast with where to get it."""
    try:
        import tensorrt
    except ImportError as exc:
        raise TensorRTUnavailableError(INSTALL_HINT) from exc
    return tensorrt


def runtime_identity() -> RuntimeIdentity:
    """This machine's TensorRT version and GPU 0 (name, compute capability); fails without either."""
    tensorrt = require_tensorrt()
    from .cuda_device import CudaError, device_identity

    try:
        name, capability = device_identity(0)
    except CudaError as exc:
        raise EngineBuildError(f"{exc}: TensorRT engines are built on the GPU they run on (docker run --gpus all ...)") from exc
    return RuntimeIdentity(tensorrt_version=tensorrt.__version__, gpu_name=name, compute_capability=capability)


def current_runtime() -> Optional[RuntimeIdentity]:
    """``runtime_identity()`` where TensorRT and a GPU are present, else None (those checks are then skipped)."""
    try:
        return runtime_identity()
    except (TensorRTUnavailableError, EngineBuildError, ImportError) as exc:
        log.info("not checking plans against this machine's TensorRT and GPU: %s", str(exc).split(".")[0])
        return None


@dataclass(frozen=True, kw_only=True)
class EngineOptions:
    """How engines are built: precision (and FP32 groups), workspace, optimization level, timing cache."""

    precision: PrecisionChoice = field(default_factory=PrecisionChoice)
    workspace_mib: int = 0  # 0: TensorRT's default (the GPU's memory)
    optimization_level: int = DEFAULT_OPTIMIZATION_LEVEL
    timing_cache: Optional[Path] = None  # None: no persistent cache

    def __post_init__(self) -> None:
        if self.workspace_mib < 0:
            raise ValueError(f"--workspace-mib must be >= 0 (0: TensorRT's default), got {self.workspace_mib}")
        if not 0 <= self.optimization_level <= 5:
            raise ValueError(f"--builder-optimization-level must be in [0, 5], got {self.optimization_level}")


@dataclass(frozen=True, kw_only=True)
class BuiltEngine:
    """A plan on disk and how it was made."""

    plan: Path
    fp32_layers: Tuple[str, ...]
    seconds: float


def onnx_nodes_of(layer: trt.ILayer) -> Set[str]:
    """The ONNX node names a network layer came from: the parser's ``[ONNX Layer: name]`` metadata."""
    names = set(_ONNX_LAYER.findall(layer.metadata or ""))
    return names or {layer.name}


def pin_fp32_layers(network: trt.INetworkDefinition, node_names: Iterable[str]) -> List[str]:
    """Keep every layer parsed from ``node_names`` in FP32 (precision and float outputs); returns the layer names."""
    import tensorrt as trt

    wanted = set(node_names)
    pinned = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type == trt.LayerType.CONSTANT or not onnx_nodes_of(layer) & wanted:
            continue
        floats = [j for j in range(layer.num_outputs) if layer.get_output(j).dtype in (trt.float32, trt.float16)]
        if not floats:
            continue
        layer.precision = trt.float32
        for j in floats:
            layer.set_output_type(j, trt.float32)
        pinned.append(layer.name)
    return pinned


def _parse(builder: trt.Builder, logger: trt.ILogger, onnx_path: Path) -> Tuple[trt.INetworkDefinition, trt.OnnxParser]:
    import tensorrt as trt

    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "\n  ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT's ONNX parser rejected {onnx_path}:\n  {errors}")
    return network, parser


def _timing_cache(config: trt.IBuilderConfig, path: Optional[Path]) -> None:
    data = path.read_bytes() if path is not None and path.is_file() else b""
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        log.warning("timing cache %s was made on another GPU or TensorRT; starting a new one", path)
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)


def _write_atomically(path: Path, data: Union[bytes, trt.IHostMemory]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as out:
        out.write(memoryview(data))
    os.replace(tmp, path)


def build_engine(onnx_path: Path, plan_path: Path, *, model: str, limits: Limits, options: EngineOptions) -> BuiltEngine:
    """Parse ``onnx_path``, build one engine for ``model``'s profile and write it to ``plan_path``."""
    require_tensorrt()
    import tensorrt as trt

    start = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = _parse(builder, logger, Path(onnx_path))  # the parser owns the weights: keep it alive
    config = builder.create_builder_config()
    if options.workspace_mib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    config.builder_optimization_level = options.optimization_level
    # BuilderFlag.FP16, OBEY_PRECISION_CONSTRAINTS and the per-layer precision/output types are
    # deprecated since TensorRT 10.12 (its stubs say: superseded by strongly typed networks, which
    # would need an FP16 ONNX export with explicit casts); they still work in TensorRT 10.
    if options.precision.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    pinned: List[str] = []
    groups = options.precision.groups_for(model)
    if groups:
        nodes = select_fp32_nodes(onnx_path, groups)
        pinned = pin_fp32_layers(network, (n for names in nodes.values() for n in names))
        if any(nodes.values()) and not pinned:
            raise EngineBuildError(
                f"{model}: groups {list(groups)} select ONNX nodes, but no TensorRT layer carries their names"
                " (the parser's [ONNX Layer: ...] metadata); the FP32 pins would be silently lost"
            )
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        log.info("%s: keeping %d layers in FP32 (groups %s)", model, len(pinned), ", ".join(groups))
    profile = builder.create_optimization_profile()
    for p in model_profiles(model, limits):
        profile.set_shape(p.name, trt.Dims(list(p.min)), trt.Dims(list(p.opt)), trt.Dims(list(p.max)))
    config.add_optimization_profile(profile)
    _timing_cache(config, options.timing_cache)
    log.info("building the %s engine (%s); this takes minutes for ViT-H", model, options.precision.precision)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT could not build the {model} engine from {onnx_path} (its log above says why)")
    if options.timing_cache is not None:
        _write_atomically(Path(options.timing_cache), config.get_timing_cache().serialize())
    _write_atomically(Path(plan_path), serialized)
    return BuiltEngine(plan=Path(plan_path), fp32_layers=tuple(pinned), seconds=round(time.perf_counter() - start, 1))


def trtexec_command(
    onnx_path: Path, plan_path: Path, *, model: str, limits: Limits, options: EngineOptions, fp32_layers: Iterable[str] = ()
) -> List[str]:
    """The trtexec command line that builds the same engine (documentation and cross-checks)."""
    command = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={plan_path}", *trtexec_shape_flags(model_profiles(model, limits))]
    if options.precision.fp16:
        command.append("--fp16")
    layers = list(fp32_layers)
    if layers:
        command += [
            "--precisionConstraints=obey",
            "--layerPrecisions=" + ",".join(f"{name}:fp32" for name in layers),
            "--layerOutputTypes=" + ",".join(f"{name}:fp32" for name in layers),
        ]
    if options.workspace_mib:
        command.append(f"--memPoolSize=workspace:{options.workspace_mib}M")
    command.append(f"--builderOptimizationLevel={options.optimization_level}")
    if options.timing_cache is not None:
        command.append(f"--timingCacheFile={options.timing_cache}")
    return command
