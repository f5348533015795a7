"""SAM's pre- and postprocessing in numpy and PIL, identical to segment-anything's own.

Preprocessing mirrors ``segment_anything.utils.transforms.ResizeLongestSide`` (PIL bilinear resize
of the uint8 image, coordinates scaled per axis). Postprocessing mirrors ``Sam.postprocess_masks``
(bilinear to 1024x1024, crop to the unpadded size, bilinear to the original size, all with
``align_corners=False``), written as two small interpolation matrices so that no torch is needed.
The matrix of the long output side is applied as a few taps per output pixel (an upsampling
bilinear weighs at most three low-res pixels per axis), which is ~3x faster than a dense product.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional, Tuple

import numpy as np
from PIL import Image

from ..contract import IMAGE_SIZE, LOW_RES_SIZE


def preprocess_shape(old_h: int, old_w: int, long_side: int = IMAGE_SIZE) -> Tuple[int, int]:
    """(h, w) after scaling so the longest side is ``long_side``; SAM's get_preprocess_shape."""
    scale = long_side * 1.0 / max(old_h, old_w)
    new_h, new_w = old_h * scale, old_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


def resize_image(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> hxwx3 uint8 with the longest side 1024 (PIL bilinear, as SAM does)."""
    new_h, new_w = preprocess_shape(image.shape[0], image.shape[1])
    return np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR))


def pad_image(resized: np.ndarray) -> np.ndarray:
    """hxwx3 uint8 -> 1024x1024x3 uint8, zero-padded at the bottom and right."""
    padded = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    padded[: resized.shape[0], : resized.shape[1]] = resized
    return padded


def prepare_image(image: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """HxWx3 uint8 RGB -> (``image`` 1024x1024x3 uint8, ``input_size`` int32 (h, w)) for sam_encoder."""
    resized = resize_image(image)
    return pad_image(resized), np.array(resized.shape[:2], dtype=np.int32)


def apply_coords(coords: np.ndarray, original_size: Tuple[int, int]) -> np.ndarray:
    """...x2 (x, y) in pixels of the original image -> the same in the resized 1024 frame (float64)."""
    old_h, old_w = original_size
    new_h, new_w = preprocess_shape(old_h, old_w)
    out = np.array(coords, dtype=np.float64, copy=True)
    out[..., 0] = out[..., 0] * (new_w / old_w)
    out[..., 1] = out[..., 1] * (new_h / old_h)
    return out


def apply_boxes(boxes: np.ndarray, original_size: Tuple[int, int]) -> np.ndarray:
    """...x4 (x0, y0, x1, y1) in original pixels -> the same in the resized frame."""
    boxes = np.asarray(boxes, dtype=np.float64)
    return apply_coords(boxes.reshape(-1, 2, 2), original_size).reshape(boxes.shape)


@lru_cache(maxsize=64)
def _bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """out x in weights of torch's bilinear interpolation (align_corners=False, no antialias)."""
    weights = np.zeros((out_size, in_size), dtype=np.float64)
    if in_size == out_size:
        np.fill_diagonal(weights, 1.0)
        return weights
    # torch computes the source index in float32 for float32 tensors; do the same.
    ratio = np.float32(in_size) / np.float32(out_size)
    src = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * ratio - np.float32(0.5)
    src = np.maximum(src, np.float32(0.0))
    i0 = src.astype(np.int64)
    i1 = np.where(i0 < in_size - 1, i0 + 1, i0)
    lam1 = np.clip(src - i0.astype(np.float32), 0.0, 1.0).astype(np.float64)
    rows = np.arange(out_size)
    np.add.at(weights, (rows, i0), 1.0 - lam1)
    np.add.at(weights, (rows, i1), lam1)
    return weights


@lru_cache(maxsize=16)
def _postprocess_matrices(input_size: Tuple[int, int], original_size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """(H x 256, 256 x W) float32 matrices mapping low-res logits to the original image."""
    up = _bilinear_matrix(LOW_RES_SIZE, IMAGE_SIZE)  # 1024 x 256
    rows = _bilinear_matrix(input_size[0], original_size[0]) @ up[: input_size[0]]
    cols = _bilinear_matrix(input_size[1], original_size[1]) @ up[: input_size[1]]
    return rows.astype(np.float32), np.ascontiguousarray(cols.T.astype(np.float32))


#: The most taps per output pixel applied as taps; beyond (a strong downscale) a dense product is cheaper.
MAX_TAPS = 8


Taps = Tuple[np.ndarray, np.ndarray]


def _operators(input_size: Tuple[int, int], original_size: Tuple[int, int], side: str) -> Tuple[np.ndarray, np.ndarray, Optional[Taps]]:
    """(rows H x 256, cols 256 x W, the taps of ``side``'s matrix or None) of one postprocess."""
    sizes = (int(input_size[0]), int(input_size[1])), (int(original_size[0]), int(original_size[1]))
    return (*_postprocess_matrices(*sizes), _taps(*sizes, side))


@lru_cache(maxsize=32)
def _taps(input_size: Tuple[int, int], original_size: Tuple[int, int], side: str) -> Optional[Taps]:
    """The nonzero weights of each output of an interpolation matrix: (index out x K, weight out x K), or None if K > MAX_TAPS."""
    rows, cols = _postprocess_matrices(input_size, original_size)
    matrix = rows if side == "rows" else np.ascontiguousarray(cols.T)  # out x 256
    taps = int((matrix != 0).sum(axis=1).max())
    if taps > MAX_TAPS:
        return None
    index = np.argsort(matrix == 0, axis=1, kind="stable")[:, :taps]  # the nonzero columns first, in order
    return index, np.take_along_axis(matrix, index, axis=1)


def _apply_taps(values: np.ndarray, taps: Taps, out: Optional[np.ndarray]) -> np.ndarray:
    """...x256xB -> ...xOUTxB: each output row the weighted sum of a few rows of ``values`` (whole
    rows gathered, so the work is a few multiply-adds of contiguous rows per output row)."""
    index, weight = taps
    shape = (*values.shape[:-2], len(index), values.shape[-1])
    if out is None:
        out = np.empty(shape, np.float32)
    # One mask at a time: its HxW float32 (8.6 MB for 1800x1200) stays in cache between the taps.
    flat_values = values.reshape(-1, *values.shape[-2:])
    flat_out = out.reshape(-1, *shape[-2:])
    gathered = np.empty(shape[-2:], np.float32)
    for item in range(len(flat_values)):
        source, target = np.ascontiguousarray(flat_values[item]), flat_out[item]
        np.multiply(source[index[:, 0]], weight[:, 0, None], out=target)
        for tap in range(1, index.shape[1]):
            np.multiply(source[index[:, tap]], weight[:, tap, None], out=gathered)
            target += gathered
    return out


def postprocess_masks(
    low_res: np.ndarray, input_size: Tuple[int, int], original_size: Tuple[int, int], *, out: Optional[np.ndarray] = None
) -> np.ndarray:
    """...x256x256 float32 logits -> ...xHxW float32 logits in the original image; Sam.postprocess_masks.

    ``out``: a float32 ...xHxW array to write the result into (no HxW temporary of our own)."""
    rows, cols, taps = _operators(input_size, original_size, "rows")
    low_res = np.asarray(low_res, dtype=np.float32)
    if taps is None:
        return np.matmul(np.matmul(rows, low_res), cols, out=out)
    return _apply_taps(np.matmul(low_res, cols), taps, out)  # rows of (low-res x columns), H of them


def postprocess_masks_transposed(low_res: np.ndarray, input_size: Tuple[int, int], original_size: Tuple[int, int]) -> np.ndarray:
    """``postprocess_masks`` laid out column-major: ...xWxH (C-contiguous), whose ``swapaxes(-1, -2)``
    is the HxW logits. COCO RLE runs down the columns, so the server encodes these without a transpose."""
    rows, cols, taps = _operators(input_size, original_size, "cols")
    along_rows = np.matmul(rows, np.asarray(low_res, dtype=np.float32)).swapaxes(-1, -2)  # ...x256xH
    if taps is None:
        return np.ascontiguousarray(np.matmul(cols.T, along_rows))
    return _apply_taps(along_rows, taps, None)  # rows of (rows x low-res) transposed, W of them
