"""One benchmark run, end to end: model -> repository -> server -> input data -> perf_analyzer
sweeps of sam_encoder, sam_decoder and sam -> in-process baselines -> report, CSVs and plots in
``<results_dir>/<timestamp>-<host>/``."""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from tritonclient.grpc.model_config_pb2 import ModelInstanceGroup

from sam_triton.build.export.exporter import DECODER_FILE, ENCODER_FILE
from sam_triton.build.export.pipeline import prepare_onnx
from sam_triton.build.models.presets import load_model, sha256_of
from sam_triton.build.repository.assemble import RepositoryOptions, assemble
from sam_triton.build.repository.model_config import read_configs
from sam_triton.build.repository.openvino_options import OpenVinoOptions
from sam_triton.build.server.tritonserver import ServerConfig, TritonServer, model_names
from sam_triton.client.contract import DECODER_MODEL, ENCODER_MODEL, ENSEMBLE_MODEL

from .analyzer import run_sweep
from .baselines import RUNNER_NAMES, OpenVinoRunner, OrtRunner, TorchRunner, measure, openvino_precisions, ort_embeddings
from .first_mask import in_process_first_masks, served_first_mask
from .input_data import write_input_data
from .install import ensure_perf_analyzer
from .machine import load_average, machine_info
from .options import PerfOptions
from .plots import plot_all
from .ratios import headline_ratios
from .report import BenchmarkRun, write_report
from .served import served_engines
from .workload import build_workload, load_photos

log = logging.getLogger(__name__)

SERVER_READY_TIMEOUT_S = 900.0
METADATA_TIMEOUT_S = 30.0


def prepare_repository(options: PerfOptions, onnx_dir: Path) -> Path:
    """Write the repository for ``options.runtime``, or check that the existing one serves these weights."""
    repository = Path(options.repository)
    if options.runtime:
        openvino = OpenVinoOptions(precision=options.precision)
        return assemble(repository, RepositoryOptions(runtime=options.runtime, openvino=openvino), onnx_dir=onnx_dir)
    if options.url:
        return repository  # the running server's repository: nothing here to check it against
    missing = {ENCODER_MODEL, DECODER_MODEL, ENSEMBLE_MODEL} - set(model_names(repository))
    if missing:
        raise FileNotFoundError(f"{repository} has no {', '.join(sorted(missing))}: build it with `sam-triton build` or pass --runtime")
    for model, name in ((ENCODER_MODEL, ENCODER_FILE), (DECODER_MODEL, DECODER_FILE)):
        served, exported = repository / model / "1" / "model.onnx", onnx_dir / name
        if served.is_file() and not served.samefile(exported) and sha256_of(served) != sha256_of(exported):
            raise ValueError(
                f"{served} is not the export of the benchmarked model ({exported}): the in-process baselines would run"
                " other weights; rebuild the repository with --runtime, or pass the matching --checkpoint/--preset"
            )
    return repository


def repository_summary(configs: Dict[str, Any]) -> str:
    """'sam_encoder: backend python, 1 x KIND_CPU, ...' from the parsed config.pbtxt files (what Triton ran)."""
    parts = []
    for model in (ENCODER_MODEL, DECODER_MODEL):
        if model not in configs:
            continue
        config = configs[model]
        runtime = f"backend {config.backend}" if config.backend else f"platform {config.platform}" if config.platform else "?"
        group = config.instance_group[0] if config.instance_group else None
        count, kind = (group.count, ModelInstanceGroup.Kind.Name(group.kind)) if group else ("?", "?")
        delay = config.dynamic_batching.max_queue_delay_microseconds if config.HasField("dynamic_batching") else "?"
        parts.append(f"{model}: {runtime}, {count} x {kind}, max_batch_size {config.max_batch_size}, queue delay {delay} us")
    return "; ".join(parts)


def triton_label(configs: Dict[str, Any]) -> str:
    """'Triton gRPC, python backend (encoder OpenVINO FP32, decoder ONNX Runtime)' (or the platform), for tables and legends."""
    encoder = configs.get(ENCODER_MODEL)
    if encoder is None:
        return "Triton gRPC"
    if encoder.backend:
        engines = {model: RUNNER_NAMES[engine].replace(" in-process", "") for model, engine in served_engines(configs).items()}
        return f"Triton gRPC, {encoder.backend} backend (encoder {engines[ENCODER_MODEL]}, decoder {engines[DECODER_MODEL]})"
    return f"Triton gRPC, {encoder.platform}" if encoder.platform else "Triton gRPC"


@contextlib.contextmanager
def serving(options: PerfOptions, repository: Path, run_dir: Path) -> Iterator[Tuple[str, str]]:
    """(gRPC url, how it is served): the given --url, or a tritonserver started (and stopped) here."""
    if options.url:
        yield options.url, f"a running tritonserver at {options.url} (--url), said to serve {repository}"
        return
    config = ServerConfig.on_free_ports(repository, tritonserver=options.tritonserver)
    server = TritonServer(config, log_path=run_dir / "tritonserver.log", cache_dir=options.cache_dir)
    how = f"tritonserver {options.tritonserver}" if options.tritonserver else "the embedded tritonserver of nvidia-pytriton"
    server.start(timeout_s=SERVER_READY_TIMEOUT_S)
    try:
        yield config.grpc_url, f"{how}, started by this run on loopback, serving {repository}"
    finally:
        server.stop()


def server_version(url: str) -> str:
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(url) as client:
        metadata = client.get_server_metadata(client_timeout=METADATA_TIMEOUT_S)
    return f"{metadata.name} {metadata.version}"


def run_benchmark(options: PerfOptions) -> BenchmarkRun:
    """Run everything and write report.md, results.json, CSVs and plots into the run's folder."""
    start, load_at_start = time.monotonic(), load_average()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    run_dir = Path(options.results_dir) / f"{time.strftime('%Y%m%d-%H%M%S')}-{socket.gethostname()}"
    run_dir.mkdir(parents=True, exist_ok=False)
    tool = ensure_perf_analyzer(options.tools_dir)  # before anything slow: fail fast where it cannot run
    onnx_dir, manifest = prepare_onnx(
        options.model, cache_dir=options.cache_dir, check_image=options.check_image, check=options.check_export
    )
    repository = prepare_repository(options, onnx_dir)
    workload = build_workload(load_photos(options.photos))
    ort = OrtRunner(onnx_dir)
    embeddings = ort_embeddings(ort, workload.photos)  # perf_analyzer's decoder data, and the ONNX Runtime baseline's
    input_data = write_input_data(workload, embeddings, run_dir / "input_data")

    with serving(options, repository, run_dir) as (url, how):
        version = server_version(url)
        sweeps = {}
        for label, (model, data) in input_data.items():
            decoder = model == DECODER_MODEL
            sweeps[label] = run_sweep(
                tool,
                label=label,
                model=model,
                url=url,
                input_data=data,
                out_dir=run_dir / "perf_analyzer",
                concurrencies=options.decoder_concurrency if decoder else options.encoder_concurrency,
                measurement=options.decoder_measurement if decoder else options.encoder_measurement,
                timeout_s=options.run_timeout_s,
            )
        configs = read_configs(repository)
        first_masks = [served_first_mask(url, [photo.image for photo in workload.photos], triton_label(configs))]

    sam, _ = load_model(checkpoint=options.model.checkpoint, model_type=options.model.model_type, seed=options.model.seed)
    baselines = measure(ort, workload, requests=options.baseline_requests, embeddings=embeddings)
    precisions, bf16_missing = openvino_precisions()
    if options.precision == "int8":  # the served INT8 encoder's in-process twin
        precisions += ("int8",)
    for precision in precisions:  # one runner at a time: a ViT-B graph compiled twice is gigabytes
        baselines += measure(OpenVinoRunner(onnx_dir, precision=precision), workload, requests=options.baseline_requests)
    baselines += measure(TorchRunner(sam), workload, requests=options.baseline_requests)

    machine = machine_info(load_at_start)
    where = f"{machine['cpu']} ({machine['usable_cores']} cores), GPU: {machine['gpu']}"
    run = BenchmarkRun(
        title=f"sam-triton benchmark: {manifest['source']}",
        run_dir=run_dir,
        started=started,
        command_line=options.command_line,
        model=manifest["source"],
        triton=(f"Triton rows: perf_analyzer over gRPC at {url} against {version}: {how} ({repository_summary(configs)})."),
        triton_label=triton_label(configs),
        perf_analyzer=tool.version(),
        perf_analyzer_env=f"LD_LIBRARY_PATH={':'.join(map(str, tool.library_dirs))}" if tool.library_dirs else "no extra environment",
        machine=machine,
        workload=workload.describe(),
        input_data={label: path for label, (_, path) in input_data.items()},
        sweeps=sweeps,
        baselines=baselines,
        ratios=headline_ratios(sweeps, baselines, served_engines(configs)),
        notes=run_notes(options, bf16_missing),
        model_type=manifest["model_type"],
        first_masks=first_masks + in_process_first_masks(baselines),
    )
    run.plots = plot_all(sweeps, baselines, run_dir / "plots", triton_label=run.triton_label, where=where)
    run.duration_s = time.monotonic() - start
    log.info("wrote %s", write_report(run))
    return run


def run_notes(options: PerfOptions, bf16_missing: Optional[str] = None) -> List[str]:
    notes = [
        f"Concurrency levels: sam_decoder {list(options.decoder_concurrency)}; sam_encoder and sam {list(options.encoder_concurrency)}."
    ]
    if options.quick:
        notes.append("--quick: one short fixed-size measurement per level and no stability check; the figures are indicative only.")
    notes.append(
        f"In-process baselines: {options.baseline_requests} timed requests per model and runtime, after one warm-up request;"
        " ONNX Runtime uses every core (intra_op_num_threads=0), as the served models do unless built with --threads;"
        " OpenVINO runs the served models' default settings (latency hint: one stream, every core)."
    )
    if bf16_missing:
        notes.append(f"OpenVINO BF16 was not measured: {bf16_missing.split(': ', 1)[1]}.")
    return notes
