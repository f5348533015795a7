"""Client-side checks of user input, before anything is sent.

Each failure raises ``InvalidInputError`` naming the argument, what it got (shape, dtype, value)
and what was expected. These checks are never ``assert``s: they must survive ``python -O``.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np
from PIL import Image

from ..contract import IMAGE_SIZE, LOW_RES_SIZE, Limits
from ..errors import InvalidInputError
from .transforms import preprocess_shape

#: The largest image side accepted (pixels). SAM downsizes everything to 1024; past this the
#: client's own resize is what costs memory, and such inputs are almost always mistakes.
MAX_IMAGE_SIDE = 16384

#: What ``set_image``, ``segment`` and ``generate`` take: an HxWx3 uint8 array, or a PIL image in mode RGB.
ImageInput = Union[np.ndarray, Image.Image]


def describe(value: object) -> str:
    """'array of shape (H, W) and dtype uint8', or the type's name for anything but an array."""
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    return f"{type(value).__name__}"


def _channels_hint(shape: Tuple[int, ...]) -> str:
    if len(shape) == 2 or (len(shape) == 3 and shape[2] == 1):
        return "a grayscale image must be converted first, e.g. np.repeat(image.reshape(h, w, 1), 3, axis=2)"
    if len(shape) == 3 and shape[2] == 4:
        return "drop the alpha channel of an RGBA image first (image[..., :3])"
    return "one RGB image, height x width x 3 channels"


def _dtype_hint(image: np.ndarray) -> str:
    """What to say after "got array of shape ... and dtype ...": the values if useful, and a fix."""
    if image.dtype.kind == "f":
        low, high = (float(image.min()), float(image.max())) if image.size else (0.0, 0.0)
        scale = "(image * 255).round().astype(np.uint8)" if high <= 1.0 else "np.clip(image, 0, 255).astype(np.uint8)"
        return f" with values in [{low:g}, {high:g}]; expected dtype uint8 in [0, 255]: convert with {scale}"
    if image.dtype.kind in "iu" and image.size and int(image.min()) >= 0 and int(image.max()) <= 255:
        return "; expected dtype uint8: its values fit, convert with image.astype(np.uint8)"
    if image.dtype == np.uint16:
        return "; expected dtype uint8 (8 bits per channel): scale 16-bit images first, e.g. (image >> 8).astype(np.uint8)"
    return "; expected dtype uint8 with values in [0, 255]"


def check_image(image: object, argument: str = "image") -> np.ndarray:
    """An HxWx3 uint8 RGB array (PIL images are converted); returns it as a C-contiguous array.

    Refused: other channel counts (grayscale, RGBA), other dtypes (16-bit, float), empty images,
    more than ``MAX_IMAGE_SIDE`` pixels on a side, and sides so unequal that the short one rounds
    to 0 pixels at SAM's 1024-pixel input.
    """
    if hasattr(image, "mode") and hasattr(image, "size") and not isinstance(image, np.ndarray):
        mode, (width, height) = image.mode, image.size
        if mode != "RGB":
            raise InvalidInputError(
                argument, f"got a PIL image of {width}x{height} pixels in mode {mode!r}; expected mode 'RGB' (use image.convert('RGB'))"
            )
        image = np.asarray(image)
    if not isinstance(image, np.ndarray):
        raise InvalidInputError(argument, f"got {describe(image)}; expected a numpy array HxWx3 of dtype uint8")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InvalidInputError(argument, f"got {describe(image)}; expected HxWx3 (RGB): {_channels_hint(image.shape)}")
    if image.dtype != np.uint8:
        raise InvalidInputError(argument, f"got {describe(image)}{_dtype_hint(image)}")
    h, w = image.shape[:2]
    if h < 1 or w < 1:
        raise InvalidInputError(argument, f"got {describe(image)}, an empty image; expected at least 1x1 pixels")
    if max(h, w) > MAX_IMAGE_SIDE:
        raise InvalidInputError(argument, f"got {describe(image)}; expected at most {MAX_IMAGE_SIDE} pixels on a side")
    if min(preprocess_shape(h, w)) < 1:
        raise InvalidInputError(
            argument,
            f"got {describe(image)}; expected sides at most {2 * IMAGE_SIZE} times longer than each other"
            f" (resized to SAM's {IMAGE_SIZE}-pixel input its short side would be 0 pixels)",
        )
    return np.ascontiguousarray(image)


def _finite_float_array(value: object, argument: str, expected: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(argument, f"got {describe(value)}; expected {expected}") from exc
    bad = ~np.isfinite(array)
    if np.any(bad):
        where = tuple(int(i) for i in np.argwhere(bad)[0]) if array.ndim else ()
        raise InvalidInputError(
            argument, f"got {describe(np.asarray(value))} holding NaN or infinity (first at index {list(where)}); expected {expected}"
        )
    return array


def _check_inside(coords: np.ndarray, original_size: Tuple[int, int], argument: str) -> None:
    h, w = original_size
    x, y = coords[..., 0], coords[..., 1]
    outside = (x < 0) | (x > w) | (y < 0) | (y > h)
    if np.any(outside):
        index = int(np.argmax(outside.reshape(-1)))
        point = coords.reshape(-1, 2)[index]
        raise InvalidInputError(
            argument,
            f"has coordinates outside the image: (x, y) = ({point[0]:g}, {point[1]:g}) at point {index}"
            f" of {w}x{h} pixels; expected x in [0, {w}] and y in [0, {h}] (pixels of the original image)",
        )


def check_points(
    point_coords: object, point_labels: object, original_size: Tuple[int, int]
) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """Nx2 (x, y) pixel coordinates and N labels in {0, 1}; both or neither."""
    if point_coords is None and point_labels is None:
        return None, None
    if point_coords is None or point_labels is None:
        missing = "point_labels" if point_labels is None else "point_coords"
        raise InvalidInputError(missing, "is required when the other of point_coords/point_labels is given")
    coords = _finite_float_array(point_coords, "point_coords", "finite (x, y) pixel coordinates")
    if coords.ndim != 2 or coords.shape[1] != 2 or coords.shape[0] < 1:
        raise InvalidInputError("point_coords", f"got shape {coords.shape}; expected Nx2 (x, y) with N >= 1")
    labels = _finite_float_array(point_labels, "point_labels", "labels 1 (foreground) or 0 (background)")
    if labels.shape != (coords.shape[0],):
        raise InvalidInputError("point_labels", f"got shape {labels.shape}; expected ({coords.shape[0]},), one label per point")
    if not np.all(np.isin(labels, (0, 1))):
        raise InvalidInputError(
            "point_labels",
            f"got values {sorted(set(labels.tolist()))} in shape {labels.shape}; expected 1 (foreground)"
            " or 0 (background) (a box goes in box=, not as labels 2 and 3)",
        )
    _check_inside(coords, original_size, "point_coords")
    return coords, labels


def check_box(box: object, original_size: Tuple[int, int]) -> Optional[np.ndarray]:
    """A length-4 (x0, y0, x1, y1) box with x1 > x0 and y1 > y0, inside the image."""
    if box is None:
        return None
    array = _finite_float_array(box, "box", "finite (x0, y0, x1, y1) pixel coordinates")
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
        raise InvalidInputError(
            "mask_input",
            f"got {describe(array)}; expected shape {expected} (one of the low-res logits a previous predict returned, as logits[None, i])",
        )
    if not np.issubdtype(array.dtype, np.floating) or not np.all(np.isfinite(array)):
        raise InvalidInputError("mask_input", f"got {describe(array)}; expected finite float logits")
    return array.astype(np.float32)


def check_point_count(n_points: int, has_box: bool, limits: Limits) -> None:
    """A prompt's decoder rows (its points, plus two box corners or one padding point) must fit the decoder."""
    rows = n_points + (2 if has_box else 1)
    if rows > limits.max_points:
        extra = "2 box corners" if has_box else "1 padding point"
        most = limits.max_points - (2 if has_box else 1)
        raise InvalidInputError(
            "point_coords",
            f"got {n_points} points{' and a box' if has_box else ''}: {rows} decoder rows with SAM's {extra}; expected at most"
            f" {limits.max_points} rows (the decoder's max_points), so at most {most} points {'with' if has_box else 'without'} a box",
        )
