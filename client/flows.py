"""SamPredictor's calls as flows over ``SamCore``: set_image, predict, predict_batch, segment.

Each flow checks its arguments before it sends anything, so bad input raises
``InvalidInputError`` before a byte is sent. Image preparation and full-resolution upsampling are
``Compute`` ops: the asyncio client runs them in a worker thread, off its event loop.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageOps

from .contract import ENSEMBLE_MODEL, IOU_PREDICTIONS, LOW_RES_MASKS, LOW_RES_SIZE, NUM_MASK_OUTPUTS, PREVIOUS_MASK
from .errors import InvalidInputError
from .predictor.prompt_batches import BatchPrompts, encode_prompt_batch, plan_requests
from .predictor.prompts import DecoderPrompt, encode_prompt
from .predictor.requests import OUTPUT_NAMES, ImageState, full_resolution, image_request, predictions, prompt_request, upsampled
from .predictor.validation import ImageInput
from .transport.core import Embedded, SamCore
from .transport.ops import FlowOf, compute
from .transport.sessions import SessionRef, Upload, decode_masks, image_upload

#: masks CxHxW, iou_predictions C, low-res logits Cx256x256 (with a leading P in predict_batch)
Prediction = Tuple[np.ndarray, np.ndarray, np.ndarray]


def set_image(core: SamCore, image: ImageInput, image_format: str, timeout_s: float) -> FlowOf[None]:
    """Embed an HxWx3 uint8 image and make it the current one."""
    if core.transport == "session":
        upload = yield from compute(image_upload, image, image_format)
        return (yield from _open_upload(core, upload, timeout_s))
    state = yield from compute(image_request, image, image_format)
    embedded = yield from core.embed(state, timeout_s)
    core.set_current(embedded)


def _open_upload(core: SamCore, upload: Upload, timeout_s: float) -> FlowOf[None]:
    embedded = yield from core.embed(None, timeout_s, upload)
    core.set_current(embedded)
    yield from core.close_forgotten(timeout_s)


def read_file(image_file: object) -> bytes:
    """A path (str or Path) or the bytes of an image file -> its bytes."""
    if isinstance(image_file, (bytes, bytearray, memoryview)):
        data = bytes(image_file)
    elif isinstance(image_file, (str, Path)):
        try:
            data = Path(image_file).read_bytes()
        except OSError as exc:
            raise InvalidInputError("image_file", f"cannot read {str(image_file)!r}: {exc.strerror or exc}") from exc
    else:
        raise InvalidInputError("image_file", f"got {type(image_file).__name__}; expected a path or the bytes of a JPEG, PNG or WebP file")
    if not data:
        raise InvalidInputError("image_file", "empty; expected a JPEG, PNG or WebP file")
    return data


def decode_file(data: bytes) -> np.ndarray:
    """An image file's bytes -> HxWx3 uint8 RGB as the server decodes it (EXIF orientation, convert("RGB"))."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except Exception as exc:
        raise InvalidInputError("image_file", f"cannot decode ({type(exc).__name__}: {exc}); expected a JPEG, PNG or WebP file") from exc


def set_image_file(core: SamCore, image_file: object, timeout_s: float) -> FlowOf[None]:
    """Make an image file the current image: sent as it is with transport "session" (the server
    decodes it), decoded here the same way otherwise."""
    data = read_file(image_file)
    if core.transport == "session":
        return (yield from _open_upload(core, Upload(data), timeout_s))
    image = yield from compute(decode_file, data)
    return (yield from set_image(core, image, "RGB", timeout_s))


def session_answers(
    core: SamCore,
    session: SessionRef,
    state: ImageState,
    prompts: Sequence[DecoderPrompt],
    *,
    multimask_output: bool,
    return_logits: bool,
    use_previous_mask: bool,
    timeout_s: float,
) -> FlowOf[Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]]:
    """P prompts on a session -> (masks PxCxHxW, iou PxC, low-res logits PxCx256x256 or None).

    The server returns full-size masks, compact; low-res logits only with the client's
    ``session_logits`` (or ``return_logits``, whose float masks are upsampled here from them)."""
    logits = return_logits or core.session_logits
    parts = []
    for indices in plan_requests(prompts, core.known_limits().max_prompts):
        outputs = yield from core.session_predict(
            session,
            [prompts[i] for i in indices],
            timeout_s,
            multimask_output=multimask_output,
            use_previous_mask=use_previous_mask,
            masks=not return_logits,
            logits=logits,
        )
        parts.append((indices, outputs))
    return (yield from compute(_session_results, parts, len(prompts), state, return_logits, logits))


def _session_results(
    parts: Sequence[Tuple[Sequence[int], Dict[str, np.ndarray]]], count: int, state: ImageState, return_logits: bool, logits: bool
) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    channels = parts[0][1][IOU_PREDICTIONS.name].shape[1]
    height, width = state.original_size
    iou = np.empty((count, channels), np.float32)
    masks = np.empty((count, channels, height, width), np.float32 if return_logits else np.bool_)
    low_res = np.empty((count, channels, LOW_RES_SIZE, LOW_RES_SIZE), np.float32) if logits else None
    for indices, outputs in parts:
        rows = list(indices)
        iou[rows] = outputs[IOU_PREDICTIONS.name]
        if low_res is not None:
            low_res[rows] = outputs[LOW_RES_MASKS.name]
        if return_logits:
            masks[rows] = full_resolution(outputs[LOW_RES_MASKS.name], state, return_logits=True)
        else:
            masks[rows] = decode_masks(outputs["masks"], state.original_size)
    return masks, iou, low_res


def _previous(mask_input: Any) -> bool:
    return isinstance(mask_input, str) and mask_input == PREVIOUS_MASK


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
    """One prompt on the current image -> (masks CxHxW, iou C, low-res logits Cx256x256).

    Transport "session": ``mask_input="previous"`` refines with the session's last best mask, and
    the low-res logits are None unless the client has ``session_logits``."""
    embedded = core.hold_current()
    try:
        previous = embedded.session is not None and _previous(mask_input)
        prompt = encode_prompt(
            embedded.state.original_size,
            point_coords=point_coords,
            point_labels=point_labels,
            box=box,
            mask_input=None if previous else mask_input,
            limits=core.known_limits(),
        )
        if embedded.session is not None:
            masks, iou, logits = yield from session_answers(
                core,
                embedded.session,
                embedded.state,
                [prompt],
                multimask_output=multimask_output,
                return_logits=return_logits,
                use_previous_mask=previous,
                timeout_s=timeout_s,
            )
            return masks[0], iou[0], None if logits is None else logits[0]  # type: ignore[return-value]
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
        if embedded.session is not None:
            answers = yield from session_answers(
                core,
                embedded.session,
                embedded.state,
                prompts,
                multimask_output=multimask_output,
                return_logits=return_logits,
                use_previous_mask=False,
                timeout_s=timeout_s,
            )
            return answers  # type: ignore[return-value]
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
