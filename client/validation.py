"""Client-side checks of user input, before anything is sent.

Each failure raises ``InvalidInputError`` naming the argument, what it got (shape, dtype, value)
and what was expected. These checks are never ``assert``s: they must survive ``python -O``.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .contract import LOW_RES_SIZE, Limits
from .errors import InvalidInputError

#: The largest image side accepted (pixels). SAM downsizes everything to 1024; past this the
#: client's own resize is what costs memory, and such inputs are almost always mistakes.
MAX_IMAGE_SIDE = 16384


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    return f"{type(value).__name__}"


def check_image(image: object, argument: str = "image") -> np.ndarray:
    """An HxWx3 uint8 RGB array (PIL images are converted); returns it as a C-contiguous array."""
    if hasattr(image, "mode") and hasattr(image, "size") and not isinstance(image, np.ndarray):
        mode = getattr(image, "mode")
        if mode != "RGB":
            raise InvalidInputError(argument, f"got a PIL image in mode {mode!r}; expected mode 'RGB' (use image.convert('RGB'))")
        image = np.asarray(image)
    if not isinstance(image, np.ndarray):
        raise InvalidInputError(argument, f"got {_describe(image)}; expected a numpy array HxWx3 of dtype uint8")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InvalidInputError(argument, f"got {_describe(image)}; expected HxWx3 (RGB): grayscale and RGBA images must be converted to RGB first")
    if image.dtype != np.uint8:
        raise InvalidInputError(argument, f"got {_describe(image)}; expected dtype uint8 with values in [0, 255]")
    h, w = image.shape[:2]
    if h < 1 or w < 1:
        raise InvalidInputError(argument, f"got an empty image of shape {image.shape}; expected at least 1x1 pixels")
    if max(h, w) > MAX_IMAGE_SIDE:
        raise InvalidInputError(argument, f"got an image of {h}x{w} pixels; expected at most {MAX_IMAGE_SIDE} on a side")
    return np.ascontiguousarray(image)


def _finite_float_array(value: object, argument: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(argument, f"got {_describe(value)}; expected numbers") from exc
    if not np.all(np.isfinite(array)):
        raise InvalidInputError(argument, "contains NaN or infinity; expected finite pixel coordinates")
    return array


def _check_inside(coords: np.ndarray, original_size: Tuple[int, int], argument: str) -> None:
    h, w = original_size
    x, y = coords[..., 0], coords[..., 1]
    if np.any(x < 0) or np.any(x > w) or np.any(y < 0) or np.any(y > h):
        raise InvalidInputError(argument, f"has coordinates outside the image; expected x in [0, {w}] and y in [0, {h}] (pixels of the original image)")


def check_points(
    point_coords: object, point_labels: object, original_size: Tuple[int, int]
) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """Nx2 (x, y) pixel coordinates and N labels in {0, 1}; both or neither."""
    if point_coords is None and point_labels is None:
        return None, None
    if point_coords is None or point_labels is None:
        missing = "point_labels" if point_labels is None else "point_coords"
        raise InvalidInputError(missing, "is required when the other of point_coords/point_labels is given")
    coords = _finite_float_array(point_coords, "point_coords")
    if coords.ndim != 2 or coords.shape[1] != 2 or coords.shape[0] < 1:
        raise InvalidInputError("point_coords", f"got shape {coords.shape}; expected Nx2 (x, y) with N >= 1")
    labels = _finite_float_array(point_labels, "point_labels")
    if labels.shape != (coords.shape[0],):
        raise InvalidInputError("point_labels", f"got shape {labels.shape}; expected ({coords.shape[0]},), one label per point")
    if not np.all(np.isin(labels, (0, 1))):
        raise InvalidInputError("point_labels", f"got values {sorted(set(labels.tolist()))}; expected 1 (foreground) or 0 (background)")
    _check_inside(coords, original_size, "point_coords")
    return coords, labels


def check_box(box: object, original_size: Tuple[int, int]) -> Optional[np.ndarray]:
    """A length-4 (x0, y0, x1, y1) box with x1 > x0 and y1 > y0, inside the image."""
    if box is None:
        return None
    array = _finite_float_array(box, "box")
    if array.shape not in ((4,), (1, 4)):
        raise InvalidInputError("box", f"got shape {array.shape}; expected (4,) as (x0, y0, x1, y1)")
    array = array.reshape(4)
    if not (array[2] > array[0] and array[3] > array[1]):
        raise InvalidInputError("box", f"got {array.tolist()}; expected x1 > x0 and y1 > y0 (x0, y0 is the top-left corner)")
    _check_inside(array.reshape(2, 2), original_size, "box")
    return array


def check_mask_input(mask_input: object) -> Optional[np.ndarray]:
    """A 1x256x256 float array of low-res logits, as returned by a previous ``predict``."""
    if mask_input is None:
        return None
    array = np.asarray(mask_input)
    expected = (1, LOW_RES_SIZE, LOW_RES_SIZE)
    if array.shape != expected:
        raise InvalidInputError("mask_input", f"got {_describe(array)}; expected shape {expected} (one of the low-res logits a previous predict returned, as logits[None, i])")
    if not np.issubdtype(array.dtype, np.floating) or not np.all(np.isfinite(array)):
        raise InvalidInputError("mask_input", f"got {_describe(array)}; expected finite float logits")
    return array.astype(np.float32)


def check_point_count(n_points: int, limits: Limits) -> None:
    """A prompt's points (clicks, two box corners or one padding point) must fit the decoder."""
    if n_points > limits.max_points:
        raise InvalidInputError(
            "point_coords",
            f"a prompt of {n_points} points (clicks, plus 2 for a box or 1 padding point) exceeds the decoder's limit of {limits.max_points}",
        )
