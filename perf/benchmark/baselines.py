"""In-process baselines: what a user would run instead of Triton, on the same model and requests.

- ``onnxruntime``: our sam_encoder.onnx / sam_decoder.onnx in an ONNX Runtime session (CPU, all
  cores), fed exactly the tensors perf_analyzer sends.
- ``openvino-fp32`` / ``openvino-bf16``: the same ONNX graphs compiled by OpenVINO for the CPU
  with the served models' default settings (latency hint: one stream, every core); BF16 only where
  the CPU runs it natively (AMX or AVX-512 BF16). ``openvino-int8``: the INT8 encoder the
  openvino runtime serves with ``--precision int8`` (perf/studies/cpu_encoders.py runs it).
- ``pytorch``: Meta's ``SamPredictor``: ``set_torch_image`` on the resized photo (SAM's
  preprocess + image encoder), then the prompt encoder and mask decoder as ``predict_torch`` runs
  them, minus its upsampling to the original size (Triton's decoder leaves that to the client too).

One request at a time (concurrency 1, as ``SamPredictor`` is used), after one untimed warm-up
request per model. ``sam`` is the encoder then the decoder, as the ensemble runs them.
Latencies are microseconds of wall time around each call.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from sam_triton.build.export.exporter import DECODER_FILE, ENCODER_FILE
from sam_triton.build.export.verify import ort_session
from sam_triton.build.repository.openvino_options import OpenVinoOptions, bf16_problem, cpu_capabilities
from sam_triton.client.contract import DECODER_MODEL, ENCODER_MODEL, ENSEMBLE_MODEL, IMAGE_EMBEDDINGS

from .workload import Case, Photo, Workload

log = logging.getLogger(__name__)

#: Each baseline runtime's name in tables and legends, in the order a run measures them.
RUNNER_NAMES = {
    "onnxruntime": "ONNX Runtime in-process",
    "openvino-fp32": "OpenVINO FP32 in-process",
    "openvino-bf16": "OpenVINO BF16 in-process",
    "openvino-int8": "OpenVINO INT8 encoder in-process",
    "pytorch": "PyTorch SamPredictor in-process",
}


@dataclass(frozen=True)
class Baseline:
    """Sequential in-process latencies (us) of one model on one runtime."""

    runtime: str
    model: str
    latencies_us: tuple

    def percentile_us(self, q: float) -> float:
        return float(np.percentile(self.latencies_us, q))

    @property
    def throughput(self) -> float:
        """Requests per second, one at a time."""
        return 1e6 / float(np.mean(self.latencies_us))


class GraphRunner:
    """Our two ONNX graphs behind ONNX Runtime's ``run(None, feed)``; ``encode`` returns the 1x256x64x64 embedding."""

    runtime = ""

    def __init__(self, encoder, decoder) -> None:
        self.encoder, self.decoder = encoder, decoder

    def encode(self, photo: Photo) -> np.ndarray:
        (embedding,) = self.encoder.run(None, {name: array[None] for name, array in photo.encoder_inputs.items()})
        return embedding

    def decode(self, embedding: np.ndarray, case: Case) -> list:
        feed = {name: array[None] for name, array in case.prompt_inputs.items()}
        feed[IMAGE_EMBEDDINGS.name] = embedding
        return self.decoder.run(None, feed)


class OrtRunner(GraphRunner):
    """Our ONNX graphs in ONNX Runtime."""

    runtime = "onnxruntime"

    def __init__(self, onnx_dir: Path, *, threads: int = 0) -> None:
        super().__init__(ort_session(Path(onnx_dir) / ENCODER_FILE, threads), ort_session(Path(onnx_dir) / DECODER_FILE, threads))


class OpenVinoGraph:
    """One ONNX graph compiled by OpenVINO for the CPU, called as an ONNX Runtime session is."""

    def __init__(self, core, path: Path, precision: str) -> None:
        served = OpenVinoOptions(precision=precision).python_parameters(threads=0)  # the served models' defaults
        compiled = core.compile_model(str(path), "CPU", {key: value for key, value in served.items() if key != "engine"})
        self.request = compiled.create_infer_request()
        self.outputs = compiled.outputs

    def run(self, _output_names, feed: Dict[str, np.ndarray]) -> List[np.ndarray]:
        self.request.infer(feed)
        return [self.request.get_tensor(output).data.copy() for output in self.outputs]


class OpenVinoRunner(GraphRunner):
    """Our ONNX graphs compiled by OpenVINO at ``precision`` (fp32, bf16, or int8: NNCF's encoder and the
    FP32 decoder), as the openvino runtime serves them."""

    def __init__(self, onnx_dir: Path, *, precision: str, int8_scope: Optional[str] = None) -> None:
        import openvino as ov

        core = ov.Core()
        self.runtime = f"openvino-{precision}"
        encoder = Path(onnx_dir) / ENCODER_FILE
        if precision == "int8":
            from sam_triton.build.export.quantize import DEFAULT_SCOPE, quantized_encoder

            encoder = quantized_encoder(Path(onnx_dir), scope=int8_scope or DEFAULT_SCOPE)
        super().__init__(OpenVinoGraph(core, encoder, precision), OpenVinoGraph(core, Path(onnx_dir) / DECODER_FILE, precision))


def openvino_precisions() -> Tuple[Tuple[str, ...], Optional[str]]:
    """(the OpenVINO precisions this CPU runs natively, why BF16 is left out or None)."""
    cpu = cpu_capabilities()
    problem = bf16_problem(capabilities=cpu["capabilities"], device_name=cpu["name"])
    return (("fp32",) if problem else ("fp32", "bf16")), problem


class TorchRunner:
    """Meta's SamPredictor (MobileSAM's for vit_t) on the same weights; ``encode`` sets the image and returns its features."""

    runtime = "pytorch"

    def __init__(self, sam) -> None:
        import torch

        from sam_triton.build.models.mobile_sam import predictor

        self.torch = torch
        self.predictor = predictor(sam)

    def encode(self, photo: Photo):
        h, w = (int(v) for v in photo.encoder_inputs["input_size"])
        resized = photo.encoder_inputs["image"][:h, :w]  # ResizeLongestSide's output, unpadded
        tensor = self.torch.as_tensor(resized).permute(2, 0, 1).contiguous()[None]
        self.predictor.set_torch_image(tensor, photo.original_size)
        return self.predictor.features

    def decode(self, features, case: Case):
        predictor, torch = self.predictor, self.torch
        transform, size = predictor.transform, case.photo.original_size
        points = boxes = None
        if "point_coords" in case.prompt:
            coords = torch.as_tensor(transform.apply_coords(case.prompt["point_coords"], size), dtype=torch.float)[None]
            points = (coords, torch.as_tensor(case.prompt["point_labels"], dtype=torch.int)[None])
        if "box" in case.prompt:
            boxes = torch.as_tensor(transform.apply_boxes(case.prompt["box"], size), dtype=torch.float)[None, :]
        with torch.inference_mode():
            sparse, dense = predictor.model.prompt_encoder(points=points, boxes=boxes, masks=None)
            return predictor.model.mask_decoder(
                image_embeddings=features,
                image_pe=predictor.model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=True,
            )


def _timed(call: Callable[[], object], count: int) -> tuple:
    call()  # warm-up, untimed
    latencies = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - start) * 1e6)
    return tuple(latencies)


def measure(runner, workload: Workload, *, requests: int, embeddings: Optional[Dict[str, np.ndarray]] = None) -> List[Baseline]:
    """``requests`` timed calls per model (cycling through the workload's photos and cases).

    ``embeddings``: this runner's own (``ort_embeddings``), when the caller has them already.
    """
    if embeddings is not None:
        embeddings = {name: embedding[None] for name, embedding in embeddings.items()}
    else:
        embeddings = {photo.name: runner.encode(photo) for photo in workload.photos}
    photos, cases = itertools.cycle(workload.photos), itertools.cycle(workload.cases)

    def encoder() -> object:
        return runner.encode(next(photos))

    def decoder() -> object:
        case = next(cases)
        return runner.decode(embeddings[case.photo.name], case)

    def ensemble() -> object:
        case = next(cases)
        return runner.decode(runner.encode(case.photo), case)

    results = []
    for model, call in ((ENCODER_MODEL, encoder), (DECODER_MODEL, decoder), (ENSEMBLE_MODEL, ensemble)):
        log.info("in-process %s: %d requests to %s", runner.runtime, requests, model)
        results.append(Baseline(runtime=runner.runtime, model=model, latencies_us=_timed(call, requests)))
    return results


def ort_embeddings(runner: GraphRunner, photos: Sequence[Photo]) -> Dict[str, np.ndarray]:
    """Photo name -> its 256x64x64 float32 embedding (sam_decoder's input data)."""
    return {photo.name: runner.encode(photo)[0] for photo in photos}
