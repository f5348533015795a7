"""Mask arithmetic of SAM's automatic mask generator in numpy: stability score, RLE, small regions.

Mirrors ``segment_anything/utils/amg.py``. RLE is COCO's uncompressed form: ``{"size": [h, w],
"counts": [...]}`` over the mask in column-major (Fortran) order, starting with a run of zeros.
``coco_rle`` needs pycocotools (optional).

``remove_small_regions`` labels 8-connected components itself, vectorised in numpy: runs per row,
joined by a union-find over whole arrays of runs (``_run_components``). The client's dependencies
are numpy, pillow and tritonclient only: OpenCV (SAM's choice), scipy.ndimage or torch would
each add tens of MB, and OpenCV pins numpy (< 4.11 keeps numpy < 2), for one function; the tests
compare this one with SAM's (OpenCV) on real and random masks. Timings: docs/studies/amg_hot_loops.md.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np

from ..errors import InvalidInputError

RLE = Dict[str, Any]


def calculate_stability_score(logits: np.ndarray, mask_threshold: float, threshold_offset: float) -> np.ndarray:
    """...xHxW float logits -> float32 IoU of the masks thresholded at threshold +- offset."""
    intersections = np.count_nonzero(logits > (mask_threshold + threshold_offset), axis=(-2, -1))
    unions = np.count_nonzero(logits > (mask_threshold - threshold_offset), axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return intersections.astype(np.float32) / unions.astype(np.float32)


def mask_to_rle(masks: np.ndarray) -> List[RLE]:
    """NxHxW bool -> N uncompressed RLEs (SAM's mask_to_rle_pytorch)."""
    out = []
    _, h, w = masks.shape
    for mask in masks:
        flat = np.ascontiguousarray(mask.T).reshape(-1)
        change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        bounds = np.concatenate([[0], change, [h * w]])
        counts = [] if not flat[0] else [0]
        counts.extend(np.diff(bounds).tolist())
        out.append({"size": [h, w], "counts": counts})
    return out


def rle_to_mask(rle: RLE) -> np.ndarray:
    """An uncompressed RLE -> HxW bool."""
    h, w = rle["size"]
    counts = np.asarray(rle["counts"], dtype=np.int64)
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape(w, h).transpose()


def area_from_rle(rle: RLE) -> int:
    return int(sum(rle["counts"][1::2]))


def require_pycocotools() -> Any:
    """pycocotools' mask module, or a clear error saying how to get it."""
    try:
        from pycocotools import mask as mask_utils
    except ImportError as exc:
        raise InvalidInputError(
            "output_mode",
            "'coco_rle' needs pycocotools: pip install 'sam-triton[coco]' (or pycocotools);"
            " 'binary_mask' and 'uncompressed_rle' need nothing more",
        ) from exc
    return mask_utils


def coco_encode_rle(rle: RLE) -> RLE:
    """Uncompressed RLE -> COCO's compressed RLE with ``counts`` as a str (JSON-ready)."""
    mask_utils = require_pycocotools()
    h, w = rle["size"]
    encoded = mask_utils.frPyObjects(rle, h, w)
    encoded["counts"] = encoded["counts"].decode("utf-8")
    return encoded


def _runs(mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal runs of True in raster order: (row, start, end exclusive) int64 arrays.

    One pass: the changes along each row (a False column padded on either side) alternate start,
    end, start, end... in raster order, so one flatnonzero gives both."""
    h, w = mask.shape
    padded = np.zeros((h, w + 2), dtype=bool)
    padded[:, 1:-1] = mask
    changes = np.flatnonzero(padded[:, 1:] != padded[:, :-1])  # row * (w + 1) + column of each start / end
    rows, starts = np.divmod(changes[0::2], w + 1)
    return rows, starts, changes[1::2] - rows * (w + 1)


def _run_components(rows: np.ndarray, starts: np.ndarray, ends: np.ndarray, h: int, w: int) -> np.ndarray:
    """Component id of each run (8-connectivity), numbered by first appearance in raster order.

    Vectorised union-find over the runs: the edges (runs of adjacent rows that touch) come from
    two searchsorted calls; each round hooks every tree that an edge joins to another under the
    smaller root, then halves paths until every run points at its root. Rounds: a few (the
    trees' depth shrinks geometrically), each a handful of array operations over the runs.
    """
    n = len(rows)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    # Runs of row r-1 touching run (r, s, e) 8-connectedly have start <= e and end >= s (ends
    # exclusive). Offsetting each row by (w + 2) makes one sorted array of all rows' starts/ends.
    stride = w + 2
    row_first = np.searchsorted(rows, np.arange(h + 1))
    offset = (rows - 1) * stride
    lo = np.maximum(np.searchsorted(ends + rows * stride, starts + offset, side="left"), row_first[np.maximum(rows - 1, 0)])
    hi = np.minimum(np.searchsorted(starts + rows * stride, ends + offset, side="right"), row_first[rows])
    counts = np.where(rows > 0, np.maximum(hi - lo, 0), 0)
    src = np.repeat(np.arange(n), counts)
    dst = np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
    parent = np.arange(n)
    while True:  # hook the larger root of every edge under the smaller, then compress; until no edge joins two trees
        root_src, root_dst = parent[src], parent[dst]
        joins = root_src != root_dst
        if not np.any(joins):
            break
        src, dst = src[joins], dst[joins]  # edges inside one tree stay inside it: drop them
        # Plain assignment: of several hooks of one root the last wins; the others join in a later round.
        parent[np.maximum(root_src[joins], root_dst[joins])] = np.minimum(root_src[joins], root_dst[joins])
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    # Every root is the smallest run of its tree (hooks point down), so numbering the roots in
    # order numbers the components by their first run.
    is_root = parent == np.arange(n)
    return (np.cumsum(is_root) - 1)[parent]


def _largest(sizes: np.ndarray, component: np.ndarray, rows: np.ndarray, starts: np.ndarray, w: int) -> int:
    """The largest component; on a tie, the one OpenCV labels first: its 8-connected labelling
    scans 2x2 blocks, so labels follow each component's first block in block-raster order."""
    first_block = np.full(len(sizes), np.iinfo(np.int64).max)
    np.minimum.at(first_block, component, (rows // 2) * (w // 2 + 1) + starts // 2)
    tied = np.flatnonzero(sizes == sizes.max())
    return int(tied[np.argmin(first_block[tied])])


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> Tuple[np.ndarray, bool]:
    """Fill holes (mode "holes") or drop islands ("islands") smaller than ``area_thresh`` pixels.

    HxW bool -> (mask, changed), as SAM's (OpenCV 8-connected components); if every island is
    small, the largest is kept.
    """
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode: got {mode!r}; expected 'holes' or 'islands'")
    correct_holes = mode == "holes"
    working = np.logical_xor(correct_holes, mask)
    rows, starts, ends = _runs(working)
    component = _run_components(rows, starts, ends, *mask.shape)
    sizes = np.bincount(component, weights=ends - starts).astype(np.int64) if len(component) else np.zeros(0, np.int64)
    small = sizes < area_thresh
    if not np.any(small):
        return mask, False
    if correct_holes:
        fill = small  # plus the background (label 0 in OpenCV): the mask itself
    else:
        fill = ~small
        if not np.any(fill):  # every island is small: keep the largest (OpenCV's first on a tie)
            fill = np.zeros_like(small)
            fill[_largest(sizes, component, rows, starts, mask.shape[1])] = True
    chosen = fill[component]
    # The chosen runs painted back: their starts and ends in the raster of rows padded by one
    # column are distinct and increasing, so the mask is runs of False and True between them.
    bounds = np.empty(2 * int(np.count_nonzero(chosen)) + 2, dtype=np.int64)
    line = mask.shape[1] + 1
    bounds[1:-1:2] = rows[chosen] * line + starts[chosen]
    bounds[2:-1:2] = rows[chosen] * line + ends[chosen]
    bounds[0], bounds[-1] = 0, mask.shape[0] * line
    values = np.arange(len(bounds) - 1) % 2 == 1
    selected = np.repeat(values, np.diff(bounds)).reshape(mask.shape[0], line)[:, :-1]
    return (mask | selected if correct_holes else selected), True
