"""Read photos and write masks and overlays as PNG files (PIL only)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageOps

# Distinct, readable colors for up to 10 masks (then they repeat).
PALETTE = np.array(
    [
        (30, 144, 255),
        (255, 99, 71),
        (50, 205, 50),
        (255, 215, 0),
        (186, 85, 211),
        (0, 206, 209),
        (255, 140, 0),
        (199, 21, 133),
        (127, 255, 0),
        (100, 149, 237),
    ],
    dtype=np.float32,
)


def load_image(path: Path) -> np.ndarray:
    """An image file -> HxWx3 uint8 RGB, upright: turned as its EXIF orientation tag says.

    Phones store the sensor's pixels and record the rotation in EXIF; SAM's notebooks read with
    ``cv2.imread``, which applies it, so a photo is segmented as its owner sees it.
    """
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def save_mask(mask: np.ndarray, path: Path) -> Path:
    """HxW bool -> a black/white 8-bit PNG."""
    Image.fromarray((np.asarray(mask, bool) * 255).astype(np.uint8), mode="L").save(path)
    return Path(path)


def _tinted(image: np.ndarray, masks_and_colors, alpha: float) -> Image.Image:
    """The image with each (HxW bool mask, RGB color) blended in at ``alpha``, in the order given."""
    out = image.astype(np.float32)
    for mask, color in masks_and_colors:
        mask = np.asarray(mask, bool)
        out[mask] = (1 - alpha) * out[mask] + alpha * color
    return Image.fromarray(out.clip(0, 255).astype(np.uint8))


def overlay(
    image: np.ndarray,
    masks: Sequence[np.ndarray],
    *,
    points: Optional[np.ndarray] = None,
    labels: Optional[np.ndarray] = None,
    box: Optional[np.ndarray] = None,
    alpha: float = 0.5,
) -> Image.Image:
    """The image with each mask tinted in its own color, and the prompts drawn on top."""
    picture = _tinted(image, ((mask, PALETTE[i % len(PALETTE)]) for i, mask in enumerate(masks)), alpha)
    draw = ImageDraw.Draw(picture)
    radius = max(3, round(max(image.shape[:2]) / 150))
    if box is not None:
        draw.rectangle([float(v) for v in np.asarray(box).reshape(4)], outline=(0, 255, 0), width=max(2, radius // 2))
    if points is not None:
        for (x, y), label in zip(np.asarray(points).reshape(-1, 2), np.asarray(labels).reshape(-1)):
            color = (0, 255, 0) if label == 1 else (255, 0, 0)
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=color, outline=(255, 255, 255))
    return picture


def overlay_all(image: np.ndarray, masks: Sequence[np.ndarray], *, alpha: float = 0.55, seed: int = 0) -> Image.Image:
    """The image with every HxW bool mask tinted in a random color, largest first (small masks stay
    visible on top), as SAM's notebooks show automatic masks."""
    colors = np.random.default_rng(seed).uniform(0, 255, size=(len(masks), 3)).astype(np.float32)
    largest_first = sorted(range(len(masks)), key=lambda k: -int(np.count_nonzero(masks[k])))
    return _tinted(image, ((masks[i], colors[i]) for i in largest_first), alpha)
