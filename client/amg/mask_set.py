"""``MaskSet``: the masks ``generate`` keeps, column by column (SAM's ``MaskData``, typed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence

import numpy as np

from .geometry import box_xyxy_to_xywh
from .masks import RLE, area_from_rle, coco_encode_rle, rle_to_mask

#: generate's output modes -> how a mask's RLE becomes its "segmentation" (SamAutomaticMaskGenerator's modes).
SEGMENTATION_ENCODERS = {"binary_mask": rle_to_mask, "uncompressed_rle": lambda rle: rle, "coco_rle": coco_encode_rle}


@dataclass
class MaskSet:
    """N masks: ``rles`` (uncompressed RLE in the image frame), ``boxes`` Nx4 int64 XYXY,
    ``iou_preds`` N float32, ``points`` Nx2 float64 (x, y) image pixels, ``stability_score`` N
    float32, ``crop_boxes`` Nx4 int64 XYXY."""

    rles: List[RLE] = field(default_factory=list)
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))
    iou_preds: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float64))
    stability_score: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    crop_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))

    def __len__(self) -> int:
        return len(self.rles)

    def take(self, indices: np.ndarray) -> "MaskSet":
        """The masks at ``indices`` (int array), in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        return MaskSet(
            rles=[self.rles[i] for i in indices.tolist()],
            boxes=self.boxes[indices],
            iou_preds=self.iou_preds[indices],
            points=self.points[indices],
            stability_score=self.stability_score[indices],
            crop_boxes=self.crop_boxes[indices],
        )

    @staticmethod
    def concat(sets: Sequence["MaskSet"]) -> "MaskSet":
        if not sets:
            return MaskSet()
        return MaskSet(
            rles=[rle for s in sets for rle in s.rles],
            boxes=np.concatenate([s.boxes for s in sets]),
            iou_preds=np.concatenate([s.iou_preds for s in sets]),
            points=np.concatenate([s.points for s in sets]),
            stability_score=np.concatenate([s.stability_score for s in sets]),
            crop_boxes=np.concatenate([s.crop_boxes for s in sets]),
        )

    def records(self, output_mode: str) -> List[Dict[str, Any]]:
        """The list of dicts SamAutomaticMaskGenerator.generate returns, one per mask.

        segmentation: HxW bool ("binary_mask"), the uncompressed RLE ("uncompressed_rle") or
        COCO's compressed RLE ("coco_rle"); area: pixels; bbox: [x, y, w, h]; predicted_iou;
        point_coords: [[x, y]] the grid point that prompted it; stability_score; crop_box: [x, y, w, h].
        """
        encode = SEGMENTATION_ENCODERS[output_mode]
        return [
            {
                "segmentation": encode(rle),
                "area": area_from_rle(rle),
                "bbox": box_xyxy_to_xywh(self.boxes[i]),
                "predicted_iou": float(self.iou_preds[i]),
                "point_coords": [self.points[i].tolist()],
                "stability_score": float(self.stability_score[i]),
                "crop_box": box_xyxy_to_xywh(self.crop_boxes[i]),
            }
            for i, rle in enumerate(self.rles)
        ]
