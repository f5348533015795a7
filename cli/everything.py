"""`sam-triton segment IMAGE --everything`: every mask of a photo (``generate``), as an overlay and JSON."""

from __future__ import annotations

import argparse

import numpy as np

from sam_triton.client.amg.generator import MaskGeneratorOptions
from sam_triton.client.client import SamClient
from sam_triton.client.outputs import everything_to_files

DEFAULTS = MaskGeneratorOptions()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("--everything", "SamAutomaticMaskGenerator's options (defaults as in SAM).")
    group.add_argument("--everything", action="store_true",
                       help="Segment everything: prompt a grid of points and write every mask kept (everything.png, masks.json) instead of one prompt's masks.")
    group.add_argument("--points-per-side", type=int, default=DEFAULTS.points_per_side, help="Grid points along one side of the image.")
    group.add_argument("--points-per-batch", type=int, default=DEFAULTS.points_per_batch, help="Prompts decoded together in one request.")
    group.add_argument("--pred-iou-thresh", type=float, default=DEFAULTS.pred_iou_thresh, help="Keep masks whose predicted IoU is above this.")
    group.add_argument("--stability-score-thresh", type=float, default=DEFAULTS.stability_score_thresh, help="Keep masks whose stability score is at least this.")
    group.add_argument("--stability-score-offset", type=float, default=DEFAULTS.stability_score_offset, help="The logit shift of the stability score.")
    group.add_argument("--box-nms-thresh", type=float, default=DEFAULTS.box_nms_thresh, help="Drop a mask whose box overlaps a better one's by more than this IoU.")
    group.add_argument("--crop-n-layers", type=int, default=DEFAULTS.crop_n_layers, help="Layers of image crops segmented again (0: the whole image only).")
    group.add_argument("--min-mask-region-area", type=int, default=DEFAULTS.min_mask_region_area, help="Fill holes and drop islands smaller than this many pixels (0: off).")


def options_from(args: argparse.Namespace) -> MaskGeneratorOptions:
    return MaskGeneratorOptions(
        points_per_side=args.points_per_side, points_per_batch=args.points_per_batch,
        pred_iou_thresh=args.pred_iou_thresh, stability_score_thresh=args.stability_score_thresh,
        stability_score_offset=args.stability_score_offset, box_nms_thresh=args.box_nms_thresh,
        crop_n_layers=args.crop_n_layers, min_mask_region_area=args.min_mask_region_area,
        output_mode="uncompressed_rle",
    )


def run(args: argparse.Namespace, image: np.ndarray) -> int:
    with SamClient(args.url, timeout_s=args.timeout_s, transport=args.transport) as client:
        summary = everything_to_files(client, image, options_from(args), args.out)
    print(f"{summary['masks']} masks -> {summary['json']}")
    print(f"overlay: {summary['overlay']}")
    return 0
