"""SamPredictor's calls as flows over ``SamCore``: set_image, predict, predict_batch, segment.

Each flow checks its arguments before it sends anything, so bad input raises
``InvalidInputError`` before a byte is sent. Image preparation and full-resolution upsampling are
``Compute`` ops: the asyncio client runs them in a worker thread, off its event loop.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from .contract import ENSEMBLE_MODEL, LOW_RES_SIZE, NUM_MASK_OUTPUTS
from .predictor.prompt_batches import BatchPrompts, encode_prompt_batch, plan_requests
from .predictor.prompts import DecoderPrompt, encode_prompt
from .predictor.requests import OUTPUT_NAMES, image_request, predictions, prompt_request, upsampled
from .predictor.validation import ImageInput
from .transport.core import Embedded, SamCore
from .transport.ops import FlowOf, compute

#: masks CxHxW, iou_predictions C, low-res logits Cx256x256 (with a leading P in predict_batch)
Prediction = Tuple[np.ndarray, np.ndarray, np.ndarray]


def set_image(core: SamCore, image: ImageInput, image_format: str, timeout_s: float) -> FlowOf[None]:
    """Embed an HxWx3 uint8 image and make it the current one."""
    state = yield from compute(image_request, image, image_format)
    embedded = yield from core.embed(state, timeout_s)
    core.set_current(embedded)


def decode_all(
    core: SamCore,
    embedded: Embedded,
    prompts: Sequence[DecoderPrompt],
    timeout_s: float,
) -> FlowOf[Tuple[np.ndarray, np.ndarray]]:
    """P prompts of one held embedding, in as few decoder requests as the limits allow.

    Returns (iou_predictions Px4, low_res_masks Px4x256x256 float32) in the order of ``prompts``.
    """
    count = len(prompts)
    iou = np.empty((count, NUM_MASK_OUTPUTS), np.float32)
    low_res = np.empty((count, NUM_MASK_OUTPUTS, LOW_RES_SIZE, LOW_RES_SIZE), np.float32)
    for indices in plan_requests(prompts, core.known_limits().max_prompts):
        chunk_iou, chunk_low_res = yield from core.decode(embedded, [prompts[i] for i in indices], timeout_s)
        iou[indices] = chunk_iou
        low_res[indices] = chunk_low_res
    return iou, low_res


def predict(
    core: SamCore,
    *,
    point_coords: Optional[np.ndarray],
    point_labels: Optional[np.ndarray],
    box: Optional[np.ndarray],
    mask_input: Optional[np.ndarray],
    multimask_output: bool,
    return_logits: bool,
    timeout_s: float,
) -> FlowOf[Prediction]:
    """One prompt on the current image -> (masks CxHxW, iou C, low-res logits Cx256x256)."""
    embedded = core.hold_current()
    try:
        prompt = encode_prompt(
            embedded.state.original_size,
            point_coords=point_coords,
            point_labels=point_labels,
            box=box,
            mask_input=mask_input,
            limits=core.known_limits(),
        )
        iou, low_res = yield from core.decode(embedded, [prompt], timeout_s)
    finally:
        core.release(embedded)
    masks, iou, low_res = yield from compute(
        upsampled, iou, low_res, embedded.state, multimask_output=multimask_output, return_logits=return_logits
    )
    return masks[0], iou[0], low_res[0]


def predict_batch(
    core: SamCore,
    *,
    point_coords: BatchPrompts,
    point_labels: BatchPrompts,
    boxes: BatchPrompts,
    mask_inputs: BatchPrompts,
    multimask_output: bool,
    return_logits: bool,
    timeout_s: float,
) -> FlowOf[Prediction]:
    """P prompts on the current image -> (masks PxCxHxW, iou PxC, low-res logits PxCx256x256)."""
    embedded = core.hold_current()
    try:
        prompts = encode_prompt_batch(
            embedded.state.original_size,
            point_coords=point_coords,
            point_labels=point_labels,
            boxes=boxes,
            mask_inputs=mask_inputs,
            limits=core.known_limits(),
        )
        iou, low_res = yield from decode_all(core, embedded, prompts, timeout_s)
    finally:
        core.release(embedded)
    return (yield from compute(upsampled, iou, low_res, embedded.state, multimask_output=multimask_output, return_logits=return_logits))


def segment(
    core: SamCore,
    image: ImageInput,
    *,
    point_coords: Optional[np.ndarray],
    point_labels: Optional[np.ndarray],
    box: Optional[np.ndarray],
    mask_input: Optional[np.ndarray],
    multimask_output: bool,
    return_logits: bool,
    image_format: str,
    timeout_s: float,
) -> FlowOf[Prediction]:
    """One request through the ``sam`` ensemble; stateless (the current image is untouched)."""
    state = yield from compute(image_request, image, image_format)
    prompt = encode_prompt(
        state.original_size,
        point_coords=point_coords,
        point_labels=point_labels,
        box=box,
        mask_input=mask_input,
        limits=core.known_limits(),
    )
    arrays = dict(state.encoder_inputs)
    arrays.update(prompt_request([prompt]))
    outputs = yield from core.infer(ENSEMBLE_MODEL, arrays, OUTPUT_NAMES, timeout_s)
    masks, iou, low_res = yield from compute(predictions, outputs, state, multimask_output=multimask_output, return_logits=return_logits)
    return masks[0], iou[0], low_res[0]
