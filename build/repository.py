"""Assemble a Triton model repository: sam_encoder, sam_decoder and the sam ensemble, per runtime.

One layout, several runtimes: the runtime decides only the backend lines, the instance kind, the
artifact file and its thread parameter. Names, tensors and dims are the contract's in every one.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple

from sam_triton.client import contract
from sam_triton.client.contract import DEFAULT_LIMITS, Limits

from .export import DECODER_FILE, ENCODER_FILE
from .model_config import cuda_graphs_block, ensemble_config, limit_parameters, model_config, warmup_block
from .tensorrt_profiles import MODEL_INPUTS, model_profiles

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class RuntimeSpec:
    """What differs between runtimes of one repository."""

    runtime_lines: Tuple[str, ...]
    instance_kind: str
    artifact: str  # the file in each version directory
    thread_parameter: Optional[str]  # config parameter that sets intra-op threads, if any
    python_model: bool = False  # writes model.py beside the artifact
    warmup: bool = False  # model_warmup at the optimization profile's opt shape


RUNTIMES: Dict[str, RuntimeSpec] = {
    # The embedded default: the python backend running ONNX Runtime on the same ONNX files.
    "python": RuntimeSpec(
        runtime_lines=('backend: "python"',), instance_kind="KIND_CPU", artifact="model.onnx",
        thread_parameter="intra_op_num_threads", python_model=True,
    ),
    # Triton's onnxruntime backend (NGC container).
    "onnxruntime": RuntimeSpec(
        runtime_lines=('platform: "onnxruntime_onnx"',), instance_kind="KIND_CPU", artifact="model.onnx",
        thread_parameter="intra_op_thread_count",
    ),
    # The product: FP16 TensorRT plans on a GPU (engines are built by sam_triton.build.tensorrt_engine).
    "tensorrt": RuntimeSpec(
        runtime_lines=('platform: "tensorrt_plan"',), instance_kind="KIND_GPU", artifact="model.plan",
        thread_parameter=None, warmup=True,
    ),
}

TEMPLATES = Path(__file__).parent / "templates"
PYTHON_MODEL_TEMPLATE = "python_onnx_model.py"
# Ensembles need an (empty) version directory; git keeps empty directories only with a file in them.
ENSEMBLE_KEEP_FILE = ".gitkeep"


@dataclass(frozen=True, kw_only=True)
class RepositoryOptions:
    """Everything that shapes a generated repository; defaults give the checked-in CPU layout."""

    runtime: str = "python"
    limits: Limits = field(default_factory=lambda: DEFAULT_LIMITS)
    encoder_instances: int = 1
    decoder_instances: int = 1
    instance_kind: Optional[str] = None  # KIND_CPU / KIND_GPU; None takes the runtime's default
    intra_op_threads: int = 0  # 0: the runtime's default (all cores)
    encoder_queue_delay_us: int = 2000
    decoder_queue_delay_us: int = 500
    decoder_cuda_graphs: bool = False  # TensorRT only: capture CUDA graphs of the decoder's common shape

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime {self.runtime!r}: expected one of {sorted(RUNTIMES)}")
        if self.instance_kind not in (None, "KIND_CPU", "KIND_GPU"):
            raise ValueError(f"instance kind {self.instance_kind!r}: expected KIND_CPU or KIND_GPU")
        for name in ("encoder_instances", "decoder_instances"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.decoder_cuda_graphs and self.runtime != "tensorrt":
            raise ValueError(f"decoder CUDA graphs need --runtime tensorrt (got {self.runtime})")

    @property
    def spec(self) -> RuntimeSpec:
        return RUNTIMES[self.runtime]


def _runtime_parameters(options: RepositoryOptions) -> Dict[str, str]:
    spec = options.spec
    return {spec.thread_parameter: str(options.intra_op_threads)} if spec.thread_parameter else {}


def _extra_blocks(options: RepositoryOptions, model: str) -> Tuple[str, ...]:
    """Warmup (and the decoder's CUDA graphs) at the shapes the TensorRT profile is optimized for."""
    if not options.spec.warmup:
        return ()
    specs = MODEL_INPUTS[model]
    opt = {p.name: p.opt for p in model_profiles(model, options.limits)}
    blocks = [warmup_block(specs, opt)]
    if model == contract.DECODER_MODEL and options.decoder_cuda_graphs:
        blocks.append(cuda_graphs_block(specs, opt, options.limits.max_batch_size))
    return tuple(blocks)


def config_files(options: RepositoryOptions) -> Dict[str, str]:
    """Relative path -> text of every generated file but the model artifacts."""
    spec = options.spec
    kind = options.instance_kind or spec.instance_kind
    files = {
        f"{contract.ENCODER_MODEL}/config.pbtxt": model_config(
            name=contract.ENCODER_MODEL, runtime_lines=spec.runtime_lines, limits=options.limits,
            inputs=contract.ENCODER_INPUTS, outputs=contract.ENCODER_OUTPUTS,
            instance_count=options.encoder_instances, instance_kind=kind,
            queue_delay_us=options.encoder_queue_delay_us, parameters=_runtime_parameters(options),
            extra_blocks=_extra_blocks(options, contract.ENCODER_MODEL),
        ),
        f"{contract.DECODER_MODEL}/config.pbtxt": model_config(
            name=contract.DECODER_MODEL, runtime_lines=spec.runtime_lines, limits=options.limits,
            inputs=contract.DECODER_INPUTS, outputs=contract.DECODER_OUTPUTS,
            instance_count=options.decoder_instances, instance_kind=kind,
            queue_delay_us=options.decoder_queue_delay_us,
            parameters={**_runtime_parameters(options), **limit_parameters(options.limits)},
            extra_blocks=_extra_blocks(options, contract.DECODER_MODEL),
        ),
        f"{contract.ENSEMBLE_MODEL}/config.pbtxt": ensemble_config(options.limits),
        f"{contract.ENSEMBLE_MODEL}/1/{ENSEMBLE_KEEP_FILE}": "",
    }
    if spec.python_model:
        source = (TEMPLATES / PYTHON_MODEL_TEMPLATE).read_text()
        for model in (contract.ENCODER_MODEL, contract.DECODER_MODEL):
            files[f"{model}/1/model.py"] = source
    return files


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def place_onnx(repository: Path, onnx_dir: Path) -> None:
    """Put the exported graphs (and any external data) in each model's version directory."""
    for model, name in ((contract.ENCODER_MODEL, ENCODER_FILE), (contract.DECODER_MODEL, DECODER_FILE)):
        version_dir = repository / model / "1"
        version_dir.mkdir(parents=True, exist_ok=True)
        _link_or_copy(onnx_dir / name, version_dir / "model.onnx")
        data = onnx_dir / f"{name}.data"
        if data.exists():
            # The graph refers to its data by the exported file name; keep that name.
            _link_or_copy(data, version_dir / data.name)


def write_configs(repository: Path, options: RepositoryOptions) -> None:
    for relative, text in config_files(options).items():
        path = repository / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def assemble(repository: Path, options: RepositoryOptions, *, onnx_dir: Optional[Path] = None) -> Path:
    """Write configs, and the ONNX graphs for ONNX-based runtimes; returns the repository path."""
    repository = Path(repository)
    write_configs(repository, options)
    if options.spec.artifact == "model.onnx":
        if onnx_dir is None:
            raise ValueError(f"runtime {options.runtime} needs the exported ONNX graphs (onnx_dir)")
        place_onnx(repository, Path(onnx_dir))
    log.info("wrote the %s model repository at %s", options.runtime, repository)
    return repository
