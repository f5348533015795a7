"""Segmentation results as files: mask PNGs, overlays and JSON, for `segment` and `demo`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .amg.generator import MaskGeneratorOptions
from .amg.masks import rle_to_mask
from .client import SamClient
from .images import overlay, overlay_all, save_mask


def segment_to_files(client: SamClient, image: np.ndarray, prompt: dict, out_dir: Path, *, multimask: bool, ensemble: bool) -> dict:
    """Segment ``image`` and write mask_<i>.png, overlay.png (best mask) and scores.json into ``out_dir``."""
    if ensemble:
        masks, scores, _ = client.segment(image, multimask_output=multimask, **prompt)
    else:
        client.set_image(image)
        masks, scores, _ = client.predict(multimask_output=multimask, **prompt)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [str(save_mask(mask, out_dir / f"mask_{i}.png")) for i, mask in enumerate(masks)]
    best = int(np.argmax(scores))
    overlay(image, [masks[best]], points=prompt.get("point_coords"), labels=prompt.get("point_labels"), box=prompt.get("box")).save(
        out_dir / "overlay.png"
    )
    summary = {
        "scores": [float(s) for s in scores],
        "best": best,
        "masks": files,
        "overlay": str(out_dir / "overlay.png"),
        "mask_pixels": [int(m.sum()) for m in masks],
    }
    (out_dir / "scores.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def everything_to_files(client: SamClient, image: np.ndarray, options: MaskGeneratorOptions, out_dir: Path) -> dict:
    """Write everything.png (all masks tinted, largest first) and masks.json (SAM's records, masks as
    uncompressed RLE) into ``out_dir``; returns a summary."""
    records = client.generate(image, options)
    out_dir.mkdir(parents=True, exist_ok=True)
    overlay_all(image, [rle_to_mask(record["segmentation"]) for record in records]).save(out_dir / "everything.png")
    (out_dir / "masks.json").write_text(json.dumps({"image_size": list(image.shape[:2]), "masks": records}) + "\n")
    return {
        "masks": len(records),
        "overlay": str(out_dir / "everything.png"),
        "json": str(out_dir / "masks.json"),
        "areas": [record["area"] for record in records],
    }
