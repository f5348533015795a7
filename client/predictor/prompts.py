"""Turn SamPredictor-style prompts into the decoder's ``point_coords``/``point_labels`` rows.

SAM's prompt encoder embeds clicks, then the two box corners (labels 2 and 3); when there is no
box it appends one padding point (label -1). The decoder graph takes exactly those rows, so the
client builds them here, in the resized 1024 frame, and the result matches ``SamPredictor``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from ..contract import (
    LABEL_BOX_BOTTOM_RIGHT,
    LABEL_BOX_TOP_LEFT,
    LABEL_PADDING,
    LOW_RES_SIZE,
    Limits,
)
from ..errors import InvalidInputError
from .transforms import apply_boxes, apply_coords
from .validation import check_box, check_mask_input, check_point_count, check_points


@dataclass(frozen=True)
class DecoderPrompt:
    """One prompt's rows for sam_decoder: coords Nx2 and labels N (float32, resized frame), mask 1x256x256."""

    coords: np.ndarray
    labels: np.ndarray
    mask_input: np.ndarray
    has_mask_input: float


def encode_prompt(
    original_size: Tuple[int, int],
    *,
    point_coords: Optional[np.ndarray] = None,
    point_labels: Optional[np.ndarray] = None,
    box: Optional[np.ndarray] = None,
    mask_input: Optional[np.ndarray] = None,
    limits: Limits,
) -> DecoderPrompt:
    """Validate one SamPredictor-style prompt (original-image pixels) and encode it for the decoder."""
    coords, labels = check_points(point_coords, point_labels, original_size)
    box_array = check_box(box, original_size)
    mask = check_mask_input(mask_input)
    if coords is None and box_array is None:
        raise InvalidInputError("point_coords", "no prompt given; expected point_coords with point_labels, a box, or both")

    rows = [] if coords is None else [apply_coords(coords, original_size)]
    row_labels = [] if labels is None else [labels]
    if box_array is not None:
        rows.append(apply_boxes(box_array, original_size).reshape(2, 2))
        row_labels.append(np.array([LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT], dtype=np.float64))
    else:
        rows.append(np.zeros((1, 2)))
        row_labels.append(np.array([LABEL_PADDING], dtype=np.float64))
    all_coords = np.concatenate(rows).astype(np.float32)
    check_point_count(0 if coords is None else coords.shape[0], box_array is not None, limits)
    return DecoderPrompt(
        coords=all_coords,
        labels=np.concatenate(row_labels).astype(np.float32),
        mask_input=mask if mask is not None else np.zeros((1, LOW_RES_SIZE, LOW_RES_SIZE), np.float32),
        has_mask_input=1.0 if mask is not None else 0.0,
    )


def stack_prompts(prompts: Sequence[DecoderPrompt], *, mask_input: bool = True) -> dict:
    """P prompts -> the decoder's prompt inputs (without the batch dim); ``mask_input=False`` leaves
    out the P x 1x256x256 masks (16 MB at 64 prompts) for a caller that sends them another way.

    Prompts with fewer points are padded with label -1 rows. Note that padding changes SAM's
    answer slightly (the padding point is a token the decoder attends to), exactly as it would in
    SAM itself; prompts of equal length are sent unpadded.
    """
    n = max(p.coords.shape[0] for p in prompts)
    coords = np.zeros((len(prompts), n, 2), np.float32)
    labels = np.full((len(prompts), n), LABEL_PADDING, np.float32)
    for i, p in enumerate(prompts):
        coords[i, : p.coords.shape[0]] = p.coords
        labels[i, : p.labels.shape[0]] = p.labels
    inputs = {"point_coords": coords, "point_labels": labels}
    if mask_input:
        inputs["mask_input"] = np.stack([p.mask_input for p in prompts]).astype(np.float32, copy=False)
    inputs["has_mask_input"] = np.array([p.has_mask_input for p in prompts], np.float32)
    return inputs


def select_outputs(iou_predictions: np.ndarray, low_res_masks: np.ndarray, multimask_output: bool) -> Tuple[np.ndarray, np.ndarray]:
    """Pick SAM's outputs from the decoder's 4: index 0 single-mask, 1..3 multimask (MaskDecoder.forward)."""
    sl = slice(1, None) if multimask_output else slice(0, 1)
    return iou_predictions[..., sl], low_res_masks[..., sl, :, :]
