"""Point grids, crop boxes and box arithmetic of SAM's automatic mask generator, in numpy.

Each function mirrors the one of the same name in ``segment_anything/utils/amg.py`` (and
torchvision's ``nms``), with the same dtypes, so ``generate`` keeps and drops exactly the masks
``SamAutomaticMaskGenerator`` does. Boxes are XYXY in pixels: x0, y0 the first and x1, y1 the
last column/row of a mask (inclusive, as SAM's ``batched_mask_to_box``); crop boxes are XYXY
with exclusive x1, y1 (slices of the image).

``nms`` is numpy, vectorised by blocks, rather than torchvision's: the client depends on numpy,
pillow and tritonclient only (no torch); the tests compare it with torchvision's batched_nms.
Timings: docs/studies/amg_hot_loops.md.
"""

from __future__ import annotations

import math
from itertools import product
from typing import List, Sequence, Tuple

import numpy as np


def build_point_grid(n_per_side: int) -> np.ndarray:
    """(n*n)x2 (x, y) points evenly spaced in [0, 1]^2, rows of x fastest."""
    offset = 1 / (2 * n_per_side)
    points_one_side = np.linspace(offset, 1 - offset, n_per_side)
    points_x = np.tile(points_one_side[None, :], (n_per_side, 1))
    points_y = np.tile(points_one_side[:, None], (1, n_per_side))
    return np.stack([points_x, points_y], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(n_per_side: int, n_layers: int, scale_per_layer: int) -> List[np.ndarray]:
    """One grid per crop layer; layer i has int(n_per_side / scale_per_layer**i) points a side."""
    return [build_point_grid(int(n_per_side / (scale_per_layer**i))) for i in range(n_layers + 1)]


def generate_crop_boxes(im_size: Tuple[int, int], n_layers: int, overlap_ratio: float) -> Tuple[List[List[int]], List[int]]:
    """Crop boxes (XYXY, exclusive ends) and their layer: the whole image, then (2**i)**2 per layer i."""
    crop_boxes, layer_idxs = [], []
    im_h, im_w = im_size
    short_side = min(im_h, im_w)
    crop_boxes.append([0, 0, im_w, im_h])
    layer_idxs.append(0)

    def crop_len(orig_len: int, n_crops: int, overlap: int) -> int:
        return math.ceil((overlap * (n_crops - 1) + orig_len) / n_crops)

    for i_layer in range(n_layers):
        n_crops_per_side = 2 ** (i_layer + 1)
        overlap = int(overlap_ratio * short_side * (2 / n_crops_per_side))
        crop_w = crop_len(im_w, n_crops_per_side, overlap)
        crop_h = crop_len(im_h, n_crops_per_side, overlap)
        crop_box_x0 = [int((crop_w - overlap) * i) for i in range(n_crops_per_side)]
        crop_box_y0 = [int((crop_h - overlap) * i) for i in range(n_crops_per_side)]
        for x0, y0 in product(crop_box_x0, crop_box_y0):
            crop_boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
            layer_idxs.append(i_layer + 1)
    return crop_boxes, layer_idxs


def uncrop_boxes_xyxy(boxes: np.ndarray, crop_box: Sequence[int]) -> np.ndarray:
    """Nx4 boxes in a crop's frame -> the image's frame."""
    x0, y0, _, _ = crop_box
    return boxes + np.array([x0, y0, x0, y0], dtype=np.int64)


def uncrop_points(points: np.ndarray, crop_box: Sequence[int]) -> np.ndarray:
    """Nx2 (x, y) in a crop's frame -> the image's frame (float64)."""
    x0, y0, _, _ = crop_box
    return points + np.array([x0, y0], dtype=np.int64)


def uncrop_masks(masks: np.ndarray, crop_box: Sequence[int], orig_h: int, orig_w: int) -> np.ndarray:
    """NxhxW masks of a crop -> NxHxW masks of the image, zero outside the crop."""
    x0, y0, x1, y1 = crop_box
    if x0 == 0 and y0 == 0 and x1 == orig_w and y1 == orig_h:
        return masks
    pad_x, pad_y = orig_w - (x1 - x0), orig_h - (y1 - y0)
    return np.pad(masks, ((0, 0), (y0, pad_y - y0), (x0, pad_x - x0)))


def is_box_near_crop_edge(boxes: np.ndarray, crop_box: Sequence[int], orig_box: Sequence[int], atol: float = 20.0) -> np.ndarray:
    """N bools: the box (crop frame) lies within ``atol`` of an edge of the crop that is not an image edge."""
    crop = np.asarray(crop_box, dtype=np.float32)
    orig = np.asarray(orig_box, dtype=np.float32)
    uncropped = uncrop_boxes_xyxy(boxes, crop_box).astype(np.float32)
    near_crop_edge = np.abs(uncropped - crop[None, :]) <= atol
    near_image_edge = np.abs(uncropped - orig[None, :]) <= atol
    return np.any(near_crop_edge & ~near_image_edge, axis=1)


def batched_mask_to_box(masks: np.ndarray) -> np.ndarray:
    """NxHxW bool -> Nx4 int64 XYXY boxes (inclusive ends); [0, 0, 0, 0] for an empty mask."""
    if masks.size == 0:
        return np.zeros((*masks.shape[:-2], 4), dtype=np.int64)
    h, w = masks.shape[-2:]
    in_height = masks.any(axis=-1)
    in_width = masks.any(axis=-2)
    rows = np.arange(h, dtype=np.int64)
    cols = np.arange(w, dtype=np.int64)
    bottom = np.max(in_height * rows, axis=-1)
    top = np.min(np.where(in_height, rows, h), axis=-1)
    right = np.max(in_width * cols, axis=-1)
    left = np.min(np.where(in_width, cols, w), axis=-1)
    empty = (right < left) | (bottom < top)
    boxes = np.stack([left, top, right, bottom], axis=-1)
    return boxes * (~empty)[..., None]


def box_xyxy_to_xywh(box: Sequence[float]) -> List:
    """One XYXY box -> [x, y, w, h] (python numbers, as SAM's records hold)."""
    x0, y0, x1, y1 = np.asarray(box).tolist()
    return [x0, y0, x1 - x0, y1 - y0]


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Nx4 XYXY -> N areas (x1 - x0) * (y1 - y0), torchvision's box_area."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """len(a) x len(b) IoU of XYXY float32 boxes, with torchvision's float32 operations in its order."""
    w = np.maximum(np.float32(0), np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]))
    h = np.maximum(np.float32(0), np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]))
    inter = w * h
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, block: int = 256) -> np.ndarray:
    """torchvision's (batched_)nms with one category: indices kept, by decreasing score.

    Greedy in the order of a stable descending sort of ``scores``; a box is dropped when its IoU
    with a kept box exceeds ``iou_threshold``. Computed in float32, as torchvision on CPU.

    Vectorised by blocks of the boxes still alive, in score order (16, doubling up to ``block``):
    one IoU matrix within the block settles it greedily (a row of booleans per kept box, the only
    Python loop), one more drops every later box that the block's kept boxes suppress. A first
    box that suppresses nearly all (the tiny preset's image-wide masks) costs two small matrices.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    ordered = boxes[order]
    threshold = np.float32(iou_threshold)
    alive = np.ones(len(ordered), dtype=bool)
    kept = [np.zeros(0, dtype=np.int64)]  # positions in ``order``, per block
    start, size = 0, min(16, block)
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 for two empty boxes: NaN, never above the threshold
        while True:
            pending = start + np.flatnonzero(alive[start:])
            if pending.size == 0:
                break
            chunk, rest = pending[:size], pending[size:]
            suppresses = _pairwise_iou(ordered[chunk], ordered[chunk]) > threshold
            settled = np.ones(len(chunk), dtype=bool)
            for i in range(len(chunk)):
                if settled[i]:
                    settled[i + 1 :] &= ~suppresses[i, i + 1 :]
            kept.append(chunk[settled])
            if rest.size:
                alive[rest] = ~np.any(_pairwise_iou(ordered[kept[-1]], ordered[rest]) > threshold, axis=0)
            start, size = int(chunk[-1]) + 1, min(2 * size, block)
    return order[np.concatenate(kept)]
