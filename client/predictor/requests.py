"""Request arrays in and SamPredictor-shaped results out: pure numpy, shared by every client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Sequence, Tuple

import numpy as np

from ..contract import (
    IMAGE,
    INPUT_SIZE,
    IOU_PREDICTIONS,
    LOW_RES_MASKS,
)
from ..errors import InvalidInputError
from .prompts import DecoderPrompt, select_outputs, stack_prompts
from .transforms import postprocess_masks, prepare_image
from .validation import check_image

MASK_THRESHOLD = 0.0  # Sam.mask_threshold
#: Float32 logits upsampled to full resolution at once (``full_resolution``): 64 prompts x 3 masks
#: of a 12 MP photo would be 9 GB of them; chunked, memory is the bool result plus this.
UPSAMPLE_CHUNK_BYTES = 64 * 2**20

OUTPUT_NAMES = (IOU_PREDICTIONS.name, LOW_RES_MASKS.name)


@dataclass(frozen=True)
class ImageState:
    """What ``set_image`` keeps: the original (H, W), the resized (h, w) and the encoder's input."""

    original_size: Tuple[int, int]
    input_size: Tuple[int, int]
    encoder_inputs: Dict[str, np.ndarray]


def image_request(image: object, image_format: str = "RGB") -> ImageState:
    """Validate and preprocess one image into batch-of-1 sam_encoder inputs."""
    if image_format not in ("RGB", "BGR"):
        raise InvalidInputError("image_format", f"got {image_format!r}; expected 'RGB' or 'BGR'")
    array = check_image(image)
    if image_format == "BGR":
        array = np.ascontiguousarray(array[..., ::-1])
    padded, input_size = prepare_image(array)
    return ImageState(
        original_size=(int(array.shape[0]), int(array.shape[1])),
        input_size=(int(input_size[0]), int(input_size[1])),
        encoder_inputs={IMAGE.name: padded[None], INPUT_SIZE.name: input_size[None]},
    )


def prompt_request(prompts: Sequence[DecoderPrompt], *, mask_input: bool = True) -> Dict[str, np.ndarray]:
    """P prompts -> batch-of-1 prompt inputs of sam_decoder / sam (without mask_input when it goes by shared memory)."""
    return {name: array[None] for name, array in stack_prompts(prompts, mask_input=mask_input).items()}


def predictions(
    outputs: Dict[str, np.ndarray],
    state: ImageState,
    *,
    multimask_output: bool,
    return_logits: bool,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batch-of-1 decoder outputs for P prompts -> ``upsampled``'s (masks, iou, low-res logits)."""
    return upsampled(
        outputs[IOU_PREDICTIONS.name][0],
        outputs[LOW_RES_MASKS.name][0],
        state,
        multimask_output=multimask_output,
        return_logits=return_logits,
    )


def upsampled(
    iou_predictions: np.ndarray,
    low_res_masks: np.ndarray,
    state: ImageState,
    *,
    multimask_output: bool,
    return_logits: bool,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decoder outputs for P prompts (iou Px4, logits Px4x256x256) -> (masks PxCxHxW, iou PxC,
    low-res logits PxCx256x256), as SamPredictor returns them.

    C is 3 with ``multimask_output`` and 1 without; masks are bool unless ``return_logits``, in
    pixels of the original image (H, W).
    """
    iou, low_res = select_outputs(iou_predictions, low_res_masks, multimask_output)
    low_res = np.ascontiguousarray(low_res)
    return full_resolution(low_res, state, return_logits=return_logits), np.ascontiguousarray(iou), low_res


def upsample_chunk(original_size: Tuple[int, int]) -> int:
    """How many masks of an HxW image to upsample at once: ``UPSAMPLE_CHUNK_BYTES`` of float32, at least 1."""
    return max(1, UPSAMPLE_CHUNK_BYTES // (4 * int(original_size[0]) * int(original_size[1])))


def full_resolution(low_res: np.ndarray, state: ImageState, *, return_logits: bool) -> np.ndarray:
    """...x256x256 logits -> ...xHxW masks in pixels of the original image: bool (thresholded at
    ``MASK_THRESHOLD``), or float32 logits with ``return_logits``.

    The result is allocated once and filled ``upsample_chunk`` masks at a time, so memory beyond
    it stays bounded (the float32 logits of all masks of a large photo would be 4x a bool result).
    """
    height, width = state.original_size
    flat = low_res.reshape(-1, *low_res.shape[-2:])
    out = np.empty((len(flat), height, width), np.float32 if return_logits else np.bool_)
    step = upsample_chunk(state.original_size)
    for start in range(0, len(flat), step):
        chunk = slice(start, start + step)
        if return_logits:
            postprocess_masks(flat[chunk], state.input_size, state.original_size, out=out[chunk])
        else:
            np.greater(postprocess_masks(flat[chunk], state.input_size, state.original_size), MASK_THRESHOLD, out=out[chunk])
    return out.reshape(*low_res.shape[:-2], height, width)
