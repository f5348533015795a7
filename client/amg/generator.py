"""Automatic mask generation: SAM's ``SamAutomaticMaskGenerator`` over Triton, in numpy.

The pipeline is Meta's (segment_anything/automatic_mask_generator.py), step for step: per crop
(the whole image, then ``crop_n_layers`` layers of overlapping crops), one embedding; a grid of
single-point prompts sent in batched decoder requests; masks filtered by predicted IoU and
stability score, boxed, dropped when they touch an inner crop edge, run-length encoded, and
de-duplicated by box NMS within the crop and then across crops; optionally small holes and
islands removed. Only the encoder and the decoder run on the server; the client-side steps are
``Compute`` ops, which the asyncio client runs in a worker thread, off its event loop.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..contract import LABEL_FOREGROUND, LABEL_PADDING, LOW_RES_SIZE
from ..errors import InvalidInputError
from ..flows import decode_all
from ..predictor.prompts import DecoderPrompt, select_outputs
from ..predictor.requests import MASK_THRESHOLD, ImageState, image_request, upsample_chunk
from ..predictor.transforms import apply_coords, postprocess_masks
from ..predictor.validation import check_image
from ..transport.core import SamCore
from ..transport.ops import Flow, compute
from .geometry import (
    batched_mask_to_box,
    box_area,
    build_all_layer_point_grids,
    generate_crop_boxes,
    is_box_near_crop_edge,
    nms,
    uncrop_boxes_xyxy,
    uncrop_masks,
    uncrop_points,
)
from .mask_set import SEGMENTATION_ENCODERS, MaskSet
from .masks import calculate_stability_score, mask_to_rle, remove_small_regions, require_pycocotools, rle_to_mask

OUTPUT_MODES = tuple(SEGMENTATION_ENCODERS)


@dataclass(frozen=True, kw_only=True)
class MaskGeneratorOptions:
    """SamAutomaticMaskGenerator's arguments, with its defaults and meaning.

    points_per_side: grid points along one side (points_per_side**2 prompts), or None with
    ``point_grids`` (one Nx2 grid in [0, 1]^2 per crop layer). points_per_batch: prompts decoded
    together (requests are also capped by the decoder's max_prompts). pred_iou_thresh,
    stability_score_thresh: keep masks above these (0 disables); stability_score_offset: the logit
    shift of the stability score. box_nms_thresh / crop_nms_thresh: box IoU above which duplicate
    masks are dropped within a crop / across crops. crop_n_layers: layers of crops (layer i has
    (2**i)**2 crops); crop_overlap_ratio: their overlap; crop_n_points_downscale_factor: grid
    shrink per layer. min_mask_region_area: holes and islands smaller than this (pixels) are
    removed (0: off). output_mode: "binary_mask", "uncompressed_rle" or "coco_rle" (pycocotools).
    """

    # ``help`` (field metadata) is what the command line says of a field; fields with it become flags.
    points_per_side: Optional[int] = field(default=32, metadata={"help": "Grid points along one side of the image."})
    points_per_batch: int = field(default=64, metadata={"help": "Prompts decoded together in one request."})
    pred_iou_thresh: float = field(default=0.88, metadata={"help": "Keep masks whose predicted IoU is above this."})
    stability_score_thresh: float = field(default=0.95, metadata={"help": "Keep masks whose stability score is at least this."})
    stability_score_offset: float = field(default=1.0, metadata={"help": "The logit shift of the stability score."})
    box_nms_thresh: float = field(default=0.7, metadata={"help": "Drop a mask whose box overlaps a better one's by more than this IoU."})
    crop_n_layers: int = field(default=0, metadata={"help": "Layers of image crops segmented again (0: the whole image only)."})
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    point_grids: Optional[Tuple[np.ndarray, ...]] = None
    min_mask_region_area: int = field(default=0, metadata={"help": "Fill holes and drop islands smaller than this many pixels (0: off)."})
    output_mode: str = "binary_mask"

    @classmethod
    def flags(cls) -> List[Tuple[str, type, Any, str]]:
        """(field name, type, default, help) of each field a command line offers as a flag."""
        types = {"points_per_side": int, "points_per_batch": int, "crop_n_layers": int, "min_mask_region_area": int}
        return [(f.name, types.get(f.name, float), f.default, f.metadata["help"]) for f in dataclasses.fields(cls) if "help" in f.metadata]

    def __post_init__(self) -> None:
        if (self.points_per_side is None) == (self.point_grids is None):
            raise InvalidInputError("points_per_side", "give exactly one of points_per_side and point_grids")
        for name in ("points_per_batch", "crop_n_points_downscale_factor"):
            if int(getattr(self, name)) < 1:
                raise InvalidInputError(name, f"got {getattr(self, name)!r}; expected an integer >= 1")
        if self.points_per_side is not None and int(self.points_per_side) < 1:
            raise InvalidInputError("points_per_side", f"got {self.points_per_side!r}; expected an integer >= 1")
        if int(self.crop_n_layers) < 0 or int(self.min_mask_region_area) < 0:
            raise InvalidInputError("crop_n_layers" if self.crop_n_layers < 0 else "min_mask_region_area", "expected >= 0")
        for name in (
            "pred_iou_thresh",
            "stability_score_thresh",
            "stability_score_offset",
            "box_nms_thresh",
            "crop_nms_thresh",
            "crop_overlap_ratio",
        ):
            if not math.isfinite(float(getattr(self, name))):
                raise InvalidInputError(name, f"got {getattr(self, name)!r}; expected a finite number")
        if self.output_mode not in OUTPUT_MODES:
            raise InvalidInputError("output_mode", f"got {self.output_mode!r}; expected one of {', '.join(OUTPUT_MODES)}")
        if self.output_mode == "coco_rle":
            require_pycocotools()
        if self.point_grids is not None:
            if len(self.point_grids) != self.crop_n_layers + 1:
                raise InvalidInputError(
                    "point_grids", f"got {len(self.point_grids)} grids; expected crop_n_layers + 1 = {self.crop_n_layers + 1}"
                )
            for i, grid in enumerate(self.point_grids):
                grid = np.asarray(grid)
                if grid.ndim != 2 or grid.shape[1] != 2 or np.any(grid < 0) or np.any(grid > 1):
                    raise InvalidInputError(f"point_grids[{i}]", f"got shape {grid.shape}; expected Nx2 (x, y) in [0, 1]")

    def grids(self) -> List[np.ndarray]:
        if self.point_grids is not None:
            return [np.asarray(grid, dtype=np.float64) for grid in self.point_grids]
        if self.points_per_side is None:  # __post_init__ refuses options with neither
            raise InvalidInputError("points_per_side", "give exactly one of points_per_side and point_grids")
        return build_all_layer_point_grids(int(self.points_per_side), self.crop_n_layers, self.crop_n_points_downscale_factor)


def point_prompts(points: np.ndarray, state: ImageState) -> List[DecoderPrompt]:
    """Nx2 (x, y) crop pixels -> one foreground click per prompt, with SAM's padding point."""
    coords = apply_coords(points, state.original_size).astype(np.float32)
    labels = np.array([LABEL_FOREGROUND, LABEL_PADDING], np.float32)
    no_mask = np.zeros((1, LOW_RES_SIZE, LOW_RES_SIZE), np.float32)
    return [
        DecoderPrompt(coords=np.stack([xy, np.zeros(2, np.float32)]), labels=labels, mask_input=no_mask, has_mask_input=0.0)
        for xy in coords
    ]


def process_batch(
    points: np.ndarray,
    iou4: np.ndarray,
    low_res4: np.ndarray,
    state: ImageState,
    crop_box: Sequence[int],
    orig_size: Tuple[int, int],
    options: MaskGeneratorOptions,
) -> MaskSet:
    """Decoder outputs of N grid points (crop pixels) -> the masks SAM's _process_batch keeps.

    Boxes and points stay in the crop's frame (``generate`` uncrops them after NMS); RLEs are in
    the image's frame.
    """
    iou, low_res = select_outputs(iou4, low_res4, multimask_output=True)
    iou = iou.reshape(-1)
    low_res = low_res.reshape(-1, LOW_RES_SIZE, LOW_RES_SIZE)
    points = np.repeat(points, iou4.shape[1] - 1, axis=0)
    keep = np.flatnonzero(iou > options.pred_iou_thresh) if options.pred_iou_thresh > 0.0 else np.arange(len(iou))
    parts = []
    step = upsample_chunk(state.original_size)  # bounds the HxW float32 logits upsampled at once
    for start in range(0, len(keep), step):
        index = keep[start : start + step]
        logits = postprocess_masks(low_res[index], state.input_size, state.original_size)
        stability = calculate_stability_score(logits, MASK_THRESHOLD, options.stability_score_offset)
        stable = stability >= options.stability_score_thresh if options.stability_score_thresh > 0.0 else np.ones(len(index), bool)
        masks = logits[stable] > MASK_THRESHOLD
        boxes = batched_mask_to_box(masks)
        inside = ~is_box_near_crop_edge(boxes, crop_box, [0, 0, orig_size[1], orig_size[0]])
        masks, boxes = masks[inside], boxes[inside]
        chosen = index[stable][inside]
        parts.append(
            MaskSet(
                rles=mask_to_rle(uncrop_masks(masks, crop_box, *orig_size)),
                boxes=boxes,
                iou_preds=iou[chosen].astype(np.float32),
                points=points[chosen],
                stability_score=stability[stable][inside],
                crop_boxes=np.tile(np.asarray(crop_box, np.int64), (len(chosen), 1)),
            )
        )
    return MaskSet.concat(parts)


def generate(core: SamCore, image: object, options: MaskGeneratorOptions, timeout_s: float) -> Flow:
    """All masks of an HxWx3 uint8 RGB image -> SamAutomaticMaskGenerator.generate's list of dicts."""
    image = check_image(image)
    orig_size = (int(image.shape[0]), int(image.shape[1]))
    grids = options.grids()
    crop_boxes, layer_idxs = generate_crop_boxes(orig_size, options.crop_n_layers, options.crop_overlap_ratio)
    parts = []
    for crop_box, layer in zip(crop_boxes, layer_idxs):
        part = yield from _process_crop(core, image, crop_box, grids[layer], orig_size, options, timeout_s)
        parts.append(part)
    return (yield from compute(merge_crops, parts, options))


def merge_crops(parts: List[MaskSet], options: MaskGeneratorOptions) -> List[Dict[str, Any]]:
    """The masks of every crop -> generate's records: NMS across crops, small regions removed."""
    data = MaskSet.concat(parts)
    if len(parts) > 1:  # duplicates across crops: prefer masks from smaller crops
        scores = 1 / box_area(data.crop_boxes).astype(np.float32)
        data = data.take(nms(data.boxes, scores, options.crop_nms_thresh))
    if options.min_mask_region_area > 0:
        data = remove_small_mask_regions(data, options.min_mask_region_area, max(options.box_nms_thresh, options.crop_nms_thresh))
    return data.records(options.output_mode)


def _process_crop(
    core: SamCore,
    image: np.ndarray,
    crop_box: List[int],
    grid: np.ndarray,
    orig_size: Tuple[int, int],
    options: MaskGeneratorOptions,
    timeout_s: float,
) -> Flow:
    x0, y0, x1, y1 = crop_box
    state = yield from compute(image_request, np.ascontiguousarray(image[y0:y1, x0:x1]))
    points_for_image = grid * np.array(state.original_size)[None, ::-1]
    embedded = yield from core.embed(state, timeout_s)
    batches = []
    try:
        for start in range(0, len(points_for_image), options.points_per_batch):
            points = points_for_image[start : start + options.points_per_batch]
            iou, low_res = yield from decode_all(core, embedded, point_prompts(points, state), timeout_s)
            batch = yield from compute(process_batch, points, iou, low_res, state, crop_box, orig_size, options)
            batches.append(batch)
    finally:
        core.release(embedded)
    return (yield from compute(merge_batches, batches, crop_box, options))


def merge_batches(batches: List[MaskSet], crop_box: List[int], options: MaskGeneratorOptions) -> MaskSet:
    """The masks of one crop's batches -> NMS within the crop, boxes and points in image pixels."""
    data = MaskSet.concat(batches)
    data = data.take(nms(data.boxes, data.iou_preds, options.box_nms_thresh))
    data.boxes = uncrop_boxes_xyxy(data.boxes, crop_box)
    data.points = uncrop_points(data.points, crop_box)
    return data


def remove_small_mask_regions(data: MaskSet, min_area: int, nms_thresh: float) -> MaskSet:
    """SAM's postprocess_small_regions: fill small holes, drop small islands, then NMS that
    prefers masks that needed no change."""
    if len(data) == 0:
        return data
    masks, scores = [], []
    for rle in data.rles:
        mask, holes_changed = remove_small_regions(rle_to_mask(rle), min_area, mode="holes")
        mask, islands_changed = remove_small_regions(mask, min_area, mode="islands")
        masks.append(mask)
        scores.append(0.0 if (holes_changed or islands_changed) else 1.0)
    stacked = np.stack(masks)
    boxes = batched_mask_to_box(stacked)
    keep = nms(boxes, np.asarray(scores, np.float32), nms_thresh)
    for i in keep.tolist():
        if scores[i] == 0.0:
            data.rles[i] = mask_to_rle(stacked[i][None])[0]
            data.boxes[i] = boxes[i]
    return data.take(keep)


def generate_options(options: Optional[MaskGeneratorOptions], overrides: Dict[str, Any]) -> MaskGeneratorOptions:
    """``options`` (or the defaults) with keyword ``overrides``; an unknown keyword is an error."""
    base = options or MaskGeneratorOptions()
    known = {f.name for f in dataclasses.fields(MaskGeneratorOptions)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise InvalidInputError(unknown[0], f"is not an option of generate; expected one of {', '.join(sorted(known))}")
    if not overrides:
        return base
    changes = dict(overrides)
    if "points_per_side" not in overrides and overrides.get("point_grids") is not None:
        changes["points_per_side"] = None
    return dataclasses.replace(base, **changes)
