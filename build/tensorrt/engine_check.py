"""Load each built plan and run one real request through it, against ONNX Runtime on the same graph.

Every build step checks its own output. For the engines: the encoder runs a real photo, prepared
exactly as the client prepares it; the decoder runs that photo's embedding (ONNX Runtime's, so the
decoder's own error is measured) with a click, fg/bg clicks, a box and box + click. Relative L2 of
embeddings and logits, and the IoU of the thresholded masks, go into the plan's metadata; an
engine outside the tolerance of its precision raises with the figures. Needs TensorRT, a GPU and
cuda-python (device buffers and the stream come from ``cuda_device``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict

import numpy as np

from sam_triton.client import contract
from sam_triton.client.contract import DEFAULT_LIMITS
from sam_triton.client.predictor.prompts import encode_prompt
from sam_triton.client.predictor.requests import prompt_request
from sam_triton.client.predictor.transforms import prepare_image

from ..export.exporter import DECODER_FILE, ENCODER_FILE
from ..export.verify import check_prompts, mask_iou, ort_session, rel_l2
from .engine import require_tensorrt

log = logging.getLogger(__name__)

#: The most relative L2 error an engine may show against ONNX Runtime FP32, per precision.
REL_L2_TOLERANCE = {"fp32": 1e-3, "fp16": 5e-2, "mixed": 5e-2}
#: The least IoU between the engine's and ONNX Runtime's thresholded masks, per precision.
MASK_IOU_TOLERANCE = {"fp32": 0.99, "fp16": 0.9, "mixed": 0.9}


class EngineCheckError(RuntimeError):
    """A plan would not load or run, or its outputs are outside the tolerance; the message has the figures."""


def run_plan(plan: Path, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """One inference of a serialized engine on numpy inputs (batch dim included); returns its outputs."""
    from .cuda_device import DeviceBuffer, Stream

    require_tensorrt()
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    engine = trt.Runtime(logger).deserialize_cuda_engine(Path(plan).read_bytes())
    if engine is None:
        raise EngineCheckError(f"TensorRT could not load {plan}")
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    buffers: Dict[str, DeviceBuffer] = {}
    try:
        for name in inputs:
            buffers[name] = DeviceBuffer.from_array(feeds[name])
            context.set_input_shape(name, buffers[name].shape)
        for name in names:
            if name not in buffers:
                dims = context.get_tensor_shape(name)  # a trt.Dims: indexable, no __iter__ in its type
                shape = tuple(dims[i] for i in range(len(dims)))
                buffers[name] = DeviceBuffer.empty(shape, trt.nptype(engine.get_tensor_dtype(name)))
        for name, buffer in buffers.items():
            context.set_tensor_address(name, buffer.ptr)
        with Stream() as stream:
            if not context.execute_async_v3(int(stream.handle)):
                raise EngineCheckError(f"TensorRT failed to run {plan}")
        return {name: buffers[name].to_array() for name in names if name not in inputs}
    finally:
        for buffer in buffers.values():
            buffer.free()


def check_engines(repository: Path, onnx_dir: Path, image: np.ndarray, *, precision: str) -> Dict[str, dict]:
    """Run both plans of ``repository`` on ``image`` and compare with ONNX Runtime; returns the figures per model."""
    repository, onnx_dir = Path(repository), Path(onnx_dir)
    padded, input_size = prepare_image(image)
    feed = {contract.IMAGE.name: padded[None], contract.INPUT_SIZE.name: input_size[None]}
    (expected_embedding,) = ort_session(onnx_dir / ENCODER_FILE).run(None, feed)
    embedding = run_plan(repository / contract.ENCODER_MODEL / "1" / "model.plan", feed)[contract.IMAGE_EMBEDDINGS.name]
    figures: Dict[str, dict] = {contract.ENCODER_MODEL: {"embedding_rel_l2": rel_l2(embedding, expected_embedding)}}

    decoder = ort_session(onnx_dir / DECODER_FILE)
    decoder_figures: Dict[str, dict] = {}
    for name, prompt in check_prompts(*image.shape[:2]).items():
        encoded = encode_prompt(image.shape[:2], limits=DEFAULT_LIMITS, **prompt)
        feed = prompt_request([encoded])
        feed[contract.IMAGE_EMBEDDINGS.name] = expected_embedding
        expected_iou, expected_logits = decoder.run(None, feed)
        got = run_plan(repository / contract.DECODER_MODEL / "1" / "model.plan", feed)
        decoder_figures[name] = {
            "logits_rel_l2": rel_l2(got[contract.LOW_RES_MASKS.name], expected_logits),
            "iou_prediction_abs": float(np.max(np.abs(got[contract.IOU_PREDICTIONS.name] - expected_iou))),
            "mask_iou": min(
                mask_iou(got[contract.LOW_RES_MASKS.name][0, 0, k], expected_logits[0, 0, k]) for k in range(contract.NUM_MASK_OUTPUTS)
            ),
        }
    figures[contract.DECODER_MODEL] = decoder_figures

    tolerance, least_iou = REL_L2_TOLERANCE[precision], MASK_IOU_TOLERANCE[precision]
    problems = []
    if not np.isfinite(embedding).all() or figures[contract.ENCODER_MODEL]["embedding_rel_l2"] > tolerance:
        problems.append(f"sam_encoder: embedding relative L2 {figures[contract.ENCODER_MODEL]['embedding_rel_l2']:.3g} > {tolerance}")
    for name, values in decoder_figures.items():
        if not values["logits_rel_l2"] <= tolerance:
            problems.append(f"sam_decoder {name}: logits relative L2 {values['logits_rel_l2']:.3g} > {tolerance}")
        if not values["mask_iou"] >= least_iou:
            problems.append(f"sam_decoder {name}: mask IoU {values['mask_iou']:.3f} < {least_iou}")
    if problems:
        raise EngineCheckError(
            f"the {precision} engines disagree with ONNX Runtime FP32:\n  "
            + "\n  ".join(problems)
            + "\nTry --precision mixed (FP32 LayerNorm/softmax) or --precision fp32."
        )
    log.info("engine check passed: %s", figures)
    return figures
