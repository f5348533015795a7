"""Assemble a Triton model repository: sam_encoder, sam_decoder and the sam ensemble, per runtime.

One layout, several runtimes: the runtime decides only the backend lines, the instance kind, the
artifact file and its parameters. Names, tensors and dims are the contract's in every one. The
decoder may run on another engine than the encoder (``decoder_engine``): the runtime of the same
kind (python backend, or Triton's own backends) that runs that engine.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

from sam_triton.client import contract
from sam_triton.client.contract import DEFAULT_LIMITS, Limits

from ..export.exporter import DECODER_FILE, ENCODER_FILE
from ..tensorrt.precision import PRECISIONS as TENSORRT_PRECISIONS
from ..tensorrt.profiles import MODEL_INPUTS, model_profiles
from .model_config import (
    ModelConfig,
    add_cuda_graphs,
    add_warmup,
    config_text,
    ensemble_config,
    label_parameters,
    limit_parameters,
    model_config,
    session_config,
)
from .openvino_options import BACKEND_PRECISIONS, DEFAULT_DECODER_ENGINE, OpenVinoOptions
from .openvino_options import PRECISIONS as OPENVINO_PRECISIONS

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class RuntimeSpec:
    """What differs between runtimes of one repository."""

    runtime_fields: Tuple[Tuple[str, str], ...]  # (ModelConfig field, value): backend or platform, ...
    instance_kind: str
    artifact: str  # the file in each version directory
    thread_parameter: Optional[str]  # config parameter that sets intra-op threads, if any
    engine: str  # what runs the graphs: onnxruntime, openvino or tensorrt
    python_model: bool = False  # writes model.py beside the artifact
    warmup: bool = False  # model_warmup at the optimization profile's opt shape
    triton_batching: bool = True  # False: max_batch_size 0 and the batch dim in dims (see model_config)
    precisions: Tuple[str, ...] = ("fp32",)  # what --precision may ask for; the first is the default
    decoder_engine: Optional[str] = None  # the decoder's default engine when not the runtime's own


RUNTIMES: Dict[str, RuntimeSpec] = {
    # Python-backend models running ONNX Runtime on the same ONNX files.
    "python": RuntimeSpec(
        runtime_fields=(("backend", "python"),),
        instance_kind="KIND_CPU",
        artifact="model.onnx",
        thread_parameter="intra_op_num_threads",
        engine="onnxruntime",
        python_model=True,
    ),
    # Triton's onnxruntime backend (NGC container).
    "onnxruntime": RuntimeSpec(
        runtime_fields=(("platform", "onnxruntime_onnx"),),
        instance_kind="KIND_CPU",
        artifact="model.onnx",
        thread_parameter="intra_op_thread_count",
        engine="onnxruntime",
    ),
    # The product: FP16 TensorRT plans on a GPU (engines are built by sam_triton.build.tensorrt.engine).
    "tensorrt": RuntimeSpec(
        runtime_fields=(("platform", "tensorrt_plan"),),
        instance_kind="KIND_GPU",
        artifact="model.plan",
        thread_parameter=None,
        engine="tensorrt",
        warmup=True,
        precisions=("fp16",) + tuple(p for p in TENSORRT_PRECISIONS if p != "fp16"),
    ),
    # The embedded default: python-backend models running OpenVINO (FP32, BF16 on AMX / AVX-512 BF16
    # CPUs, or an NNCF-quantized INT8 encoder in OpenVINO IR: build/export/quantize.py).
    "openvino": RuntimeSpec(
        runtime_fields=(("backend", "python"),),
        instance_kind="KIND_CPU",
        artifact="model.onnx",
        thread_parameter=None,
        engine="openvino",
        python_model=True,
        precisions=OPENVINO_PRECISIONS,
        decoder_engine=DEFAULT_DECODER_ENGINE,
    ),
    # Triton's own openvino backend (NGC container, CPU). It fixes a batching model's batch at
    # max_batch_size (padding or refusing smaller ones), so these models batch in their dims instead.
    "openvino-backend": RuntimeSpec(
        runtime_fields=(("backend", "openvino"), ("default_model_filename", "model.onnx")),
        instance_kind="KIND_CPU",
        artifact="model.onnx",
        thread_parameter=None,
        engine="openvino",
        triton_batching=False,
        precisions=BACKEND_PRECISIONS,
        decoder_engine=DEFAULT_DECODER_ENGINE,
    ),
}
#: The encoder's nice value on a CPU python-model runtime: under CPU contention a click's work gets
#: ~9 parts in 10 against an encode's (Linux's weights 1024 to 110); alone, an encode runs as fast.
DEFAULT_ENCODER_NICE = 10
#: The runtime `sam-triton build` and `sam-triton demo` write unless told otherwise: the fastest CPU
#: runtime that keeps the end-to-end fidelity bar (measured in docs/studies/engine_rounds_vit_b.json
#: and docs/studies/openvino_fidelity.json; the README's OpenVINO section quotes both); its decoder
#: stays on ONNX Runtime (DEFAULT_DECODER_ENGINE).
DEFAULT_RUNTIME = "openvino"
#: What --decoder-engine may ask for: the engines that run an ONNX file on the CPU.
DECODER_ENGINES = ("onnxruntime", "openvino")

TEMPLATES = Path(__file__).parent / "templates"
PYTHON_MODEL_TEMPLATE = "python_model.py"
SESSION_MODEL_TEMPLATE = "session_model.py"
# Ensembles need an (empty) version directory; git keeps empty directories only with a file in them.
ENSEMBLE_KEEP_FILE = ".gitkeep"


@dataclass(frozen=True, kw_only=True)
class RepositoryOptions:
    """Everything that shapes a generated repository; defaults give the checked-in CPU layout."""

    runtime: str = DEFAULT_RUNTIME
    limits: Limits = field(default_factory=lambda: DEFAULT_LIMITS)
    encoder_instances: int = 1
    decoder_instances: int = 1
    instance_kind: Optional[str] = None  # KIND_CPU / KIND_GPU; None takes the runtime's default
    intra_op_threads: int = 0  # inference threads per instance, either engine; 0: the runtime's default (all cores)
    # The encoder's CPU priority (nice) in its python stub, so that a click's decoder and postprocess
    # preempt an encode on a shared CPU (docs/studies/sessions_load.md); None: DEFAULT_ENCODER_NICE
    # for a python-model runtime on the CPU, else 0 (the encoder runs on a GPU or in the server's process).
    encoder_nice: Optional[int] = None
    encoder_queue_delay_us: int = 2000
    decoder_queue_delay_us: int = 500
    decoder_cuda_graphs: bool = False  # TensorRT only: capture CUDA graphs of the decoder's common shape
    decoder_engine: Optional[str] = None  # None: the runtime's choice (RuntimeSpec.decoder_engine, else its own)
    openvino: OpenVinoOptions = field(default_factory=OpenVinoOptions)  # for the models that run OpenVINO
    session_store_bytes: int = contract.DEFAULT_STORE_BYTES  # sam_session's store cap (README "Sessions")
    session_idle_ttl_s: float = contract.DEFAULT_IDLE_TTL_S
    session_max_image_pixels: int = contract.DEFAULT_MAX_IMAGE_PIXELS
    session_open_workers: int = contract.DEFAULT_SESSION_OPEN_WORKERS  # sam_session's lanes (contract)
    session_click_workers: int = contract.DEFAULT_SESSION_CLICK_WORKERS  # 0: one operation at a time

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
        if self.decoder_engine is not None:
            if self.decoder_engine not in DECODER_ENGINES:
                raise ValueError(f"decoder engine {self.decoder_engine!r}: expected one of {list(DECODER_ENGINES)}")
            if self.spec.engine == "tensorrt":
                raise ValueError("--decoder-engine: --runtime tensorrt builds TensorRT engines of both models")
        for name in ("session_store_bytes", "session_idle_ttl_s", "session_max_image_pixels"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.encoder_nice is not None and not 0 <= self.encoder_nice <= 19:
            raise ValueError(f"encoder nice {self.encoder_nice}: expected 0 (as the server) to 19 (yield the most)")
        if self.encoder_nice and not self.spec.python_model:
            raise ValueError(f"--encoder-nice: the encoder runs in tritonserver's own process with --runtime {self.runtime}")
        if self.session_open_workers < 1 or self.session_click_workers < 0:
            raise ValueError(
                f"session workers: {self.session_open_workers} for opens (expected >= 1) and"
                f" {self.session_click_workers} for clicks (expected >= 0; 0 runs one operation at a time)"
            )
        if self.openvino.precision == "int8" and not (self.spec.engine == "openvino" and self.spec.python_model):
            raise ValueError(f"precision int8: an INT8 encoder runs on --runtime openvino only (got {self.runtime})")
        if self.instance_kind == "KIND_GPU" and self.runs_openvino():
            raise ValueError("OpenVINO runs on the CPU here: --instance-kind KIND_GPU does not apply to its models")

    @property
    def encoder_priority(self) -> int:
        """The nice value the encoder's stub takes: ``encoder_nice``, or the default for its runtime and kind."""
        if self.encoder_nice is not None:
            return self.encoder_nice
        on_cpu = (self.instance_kind or self.spec.instance_kind) == "KIND_CPU"
        return DEFAULT_ENCODER_NICE if self.spec.python_model and on_cpu else 0

    @property
    def spec(self) -> RuntimeSpec:
        return RUNTIMES[self.runtime]

    @property
    def decoder_runtime(self) -> str:
        """The runtime of sam_decoder: the one of the same kind as ``runtime`` that runs the decoder's engine."""
        engine = self.decoder_engine or self.spec.decoder_engine or self.spec.engine
        if engine == self.spec.engine:
            return self.runtime
        return next(name for name, spec in RUNTIMES.items() if spec.engine == engine and spec.python_model == self.spec.python_model)

    @property
    def decoder_spec(self) -> RuntimeSpec:
        return RUNTIMES[self.decoder_runtime]

    def runs_openvino(self) -> bool:
        return "openvino" in (self.spec.engine, self.decoder_spec.engine)

    @property
    def int8_encoder(self) -> bool:
        """The encoder is NNCF's INT8 model (OpenVINO IR, model.xml + model.bin) instead of model.onnx."""
        return self.openvino.precision == "int8" and self.spec.engine == "openvino"


def _runtime_parameters(options: RepositoryOptions, spec: RuntimeSpec) -> Dict[str, str]:
    threads = options.intra_op_threads
    if spec.engine == "openvino":
        if spec.python_model:
            return options.openvino.python_parameters(threads)
        return options.openvino.backend_parameters(threads)
    params = {"engine": spec.engine} if spec.python_model else {}
    if spec.thread_parameter:
        params[spec.thread_parameter] = str(threads)
    return params


def _add_extra_blocks(config: ModelConfig, options: RepositoryOptions, model: str) -> ModelConfig:
    """Warmup (and the decoder's CUDA graphs) at the shapes the TensorRT profile is optimized for; none for the ensemble."""
    if not options.spec.warmup or model not in MODEL_INPUTS:
        return config
    specs = MODEL_INPUTS[model]
    opt = {p.name: p.opt for p in model_profiles(model, options.limits)}
    add_warmup(config, specs, opt)
    if model == contract.DECODER_MODEL and options.decoder_cuda_graphs:
        add_cuda_graphs(config, specs, opt, options.limits.max_batch_size)
    return config


def session_parameters(options: RepositoryOptions) -> Dict[str, str]:
    """sam_session's config parameters: the store's bounds, the pixel cap, the decoder's prompt
    limits, its worker lanes, and where the encoder's output is kept (GPU memory when the encoder
    runs on a GPU)."""
    gpu = (options.instance_kind or options.spec.instance_kind) == "KIND_GPU"
    return {
        "store_bytes": str(options.session_store_bytes),
        "idle_ttl_s": f"{options.session_idle_ttl_s:g}",
        "max_image_pixels": str(options.session_max_image_pixels),
        "embedding_memory": "gpu" if gpu else "cpu",
        "open_workers": str(options.session_open_workers),
        "click_workers": str(options.session_click_workers),
        **limit_parameters(options.limits),
    }


def config_files(options: RepositoryOptions) -> Dict[str, str]:
    """Relative path -> text of every generated file but the model artifacts."""
    encoder, decoder = options.spec, options.decoder_spec
    batching = encoder.triton_batching
    configs = {
        contract.ENCODER_MODEL: model_config(
            name=contract.ENCODER_MODEL,
            runtime_fields=encoder.runtime_fields,
            limits=options.limits,
            inputs=contract.ENCODER_INPUTS,
            outputs=contract.ENCODER_OUTPUTS,
            instance_count=options.encoder_instances,
            instance_kind=options.instance_kind or encoder.instance_kind,
            queue_delay_us=options.encoder_queue_delay_us,
            # "precision: int8" tells readers of the config (the perf report) what model.xml holds
            parameters={
                **_runtime_parameters(options, encoder),
                **({"precision": "int8"} if options.int8_encoder else {}),
                **({"nice": str(options.encoder_priority)} if options.encoder_priority else {}),
            },
            triton_batching=batching,
        ),
        contract.DECODER_MODEL: model_config(
            name=contract.DECODER_MODEL,
            runtime_fields=decoder.runtime_fields,
            limits=options.limits,
            inputs=contract.DECODER_INPUTS,
            outputs=contract.DECODER_OUTPUTS,
            instance_count=options.decoder_instances,
            instance_kind=options.instance_kind or decoder.instance_kind,
            queue_delay_us=options.decoder_queue_delay_us,
            parameters={
                **_runtime_parameters(options, decoder),
                **limit_parameters(options.limits),
                **(label_parameters() if decoder.python_model else {}),
            },
            triton_batching=batching,
        ),
        contract.ENSEMBLE_MODEL: ensemble_config(options.limits, triton_batching=batching),
        contract.SESSION_MODEL: session_config(session_parameters(options)),
    }
    files = {f"{model}/config.pbtxt": config_text(_add_extra_blocks(config, options, model)) for model, config in configs.items()}
    files[f"{contract.ENSEMBLE_MODEL}/1/{ENSEMBLE_KEEP_FILE}"] = ""
    files[f"{contract.SESSION_MODEL}/1/model.py"] = (TEMPLATES / SESSION_MODEL_TEMPLATE).read_text()
    source = (TEMPLATES / PYTHON_MODEL_TEMPLATE).read_text()
    for model, spec in ((contract.ENCODER_MODEL, encoder), (contract.DECODER_MODEL, decoder)):
        if spec.python_model:
            files[f"{model}/1/model.py"] = source
    return files


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


#: An INT8 encoder's files in its version directory (OpenVINO IR; the python model reads model.xml first).
INT8_FILES = ("model.xml", "model.bin")


def place_int8_encoder(repository: Path, xml: Path) -> None:
    """Put NNCF's INT8 encoder (``xml`` and the ``.bin`` beside it) in sam_encoder's version directory."""
    version_dir = repository / contract.ENCODER_MODEL / "1"
    version_dir.mkdir(parents=True, exist_ok=True)
    for name, src in zip(INT8_FILES, (xml, xml.with_suffix(".bin"))):
        _link_or_copy(src, version_dir / name)


def place_onnx(repository: Path, onnx_dir: Path, *, encoder: bool = True) -> None:
    """Put the exported graphs (and any external data) in each model's version directory."""
    for model, name in ((contract.ENCODER_MODEL, ENCODER_FILE), (contract.DECODER_MODEL, DECODER_FILE)):
        if model == contract.ENCODER_MODEL and not encoder:
            continue
        version_dir = repository / model / "1"
        version_dir.mkdir(parents=True, exist_ok=True)
        _link_or_copy(onnx_dir / name, version_dir / "model.onnx")
        data = onnx_dir / f"{name}.data"
        if data.exists():
            # The graph refers to its data by the exported file name; keep that name.
            _link_or_copy(data, version_dir / data.name)


#: What a tensorrt model's version directory holds besides its config: the plan and its metadata
#: (sam_triton.build.engine_metadata.METADATA_FILE).
PLAN_FILES = ("model.plan", "model.plan.json")


def runtime_files(options: RepositoryOptions, *, onnx_dir: Optional[Path] = None) -> Set[str]:
    """Relative path of every file a repository of ``options`` holds: configs, python models and
    each model's artifact (a plan and its metadata; an ONNX graph and, exported so, its external data)."""
    files = set(config_files(options))
    for model, graph, spec in (
        (contract.ENCODER_MODEL, ENCODER_FILE, options.spec),
        (contract.DECODER_MODEL, DECODER_FILE, options.decoder_spec),
    ):
        if spec.artifact == "model.plan":
            files.update(f"{model}/1/{name}" for name in PLAN_FILES)
            continue
        if model == contract.ENCODER_MODEL and options.int8_encoder:
            files.update(f"{model}/1/{name}" for name in INT8_FILES)
            continue
        files.add(f"{model}/1/{spec.artifact}")
        if onnx_dir is not None and (Path(onnx_dir) / f"{graph}.data").exists():
            files.add(f"{model}/1/{graph}.data")
    return files


def remove_stale_files(repository: Path, keep: Set[str]) -> List[str]:
    """Delete every file under the repository's sam_encoder, sam_decoder, sam and sam_session folders that is not in
    ``keep`` (what an earlier build for another runtime left: model.py, model.onnx, plans), and the
    folders left empty; other models' folders are not touched. Returns the removed paths."""
    repository = Path(repository)
    removed = []
    for model in (contract.ENCODER_MODEL, contract.DECODER_MODEL, contract.ENSEMBLE_MODEL, contract.SESSION_MODEL):
        folder = repository / model
        if not folder.is_dir():
            continue
        for root, dirs, files in os.walk(folder, topdown=False):  # deepest first; symlinks are removed, never followed
            root = Path(root)
            for name in files + [d for d in dirs if (root / d).is_symlink()]:
                relative = (root / name).relative_to(repository).as_posix()
                if relative not in keep:
                    (root / name).unlink()
                    removed.append(relative)
            relative = root.relative_to(repository).as_posix()
            if root != folder and not any(root.iterdir()) and not any(k.startswith(relative + "/") for k in keep):
                root.rmdir()
    if removed:
        log.info("removed from %s what an earlier build left: %s", repository, ", ".join(removed))
    return removed


def write_configs(repository: Path, options: RepositoryOptions, *, onnx_dir: Optional[Path] = None) -> None:
    """Write the configs (and python models) of ``options`` and remove what other runtimes' builds left."""
    repository = Path(repository)
    for relative, text in config_files(options).items():
        path = repository / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    remove_stale_files(repository, runtime_files(options, onnx_dir=onnx_dir))


def assemble(repository: Path, options: RepositoryOptions, *, onnx_dir: Optional[Path] = None) -> Path:
    """Write configs, and the ONNX graphs for ONNX-based runtimes (an INT8 encoder: quantized now, or
    from the cache beside the export); returns the repository path.

    Rebuilding into a repository written for another runtime leaves only this runtime's files."""
    repository = Path(repository)
    write_configs(repository, options, onnx_dir=onnx_dir)
    if options.spec.artifact == "model.onnx":
        if onnx_dir is None:
            raise ValueError(f"runtime {options.runtime} needs the exported ONNX graphs (onnx_dir)")
        place_onnx(repository, Path(onnx_dir), encoder=not options.int8_encoder)
        if options.int8_encoder:
            from ..export.quantize import quantized_encoder

            place_int8_encoder(repository, quantized_encoder(Path(onnx_dir), scope=options.openvino.int8_scope))
    log.info("wrote the %s model repository at %s", options.runtime, repository)
    return repository
