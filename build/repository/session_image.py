"""sam_session's uploads: an encoded image file -> SAM's encoder inputs, refusing what is unsafe.

The file is decoded with PIL as the client's ``load_image`` does (EXIF orientation applied,
grayscale, palette and alpha converted with ``convert("RGB")``), then prepared with the client's
own ``prepare_image`` (SAM's ResizeLongestSide, zero padding), so the embedding is the one
SamPredictor computes from the decoded pixels. The pixel count is read from the header and
checked before any pixel is decoded (a decompression bomb is a small file of a huge image).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
from PIL import Image, ImageOps

from sam_triton.client.predictor.transforms import prepare_image, preprocess_shape

#: What an upload may be: the formats the issue promises, nothing PIL happens to read besides.
FORMATS = ("JPEG", "PNG", "WEBP")


class UploadError(ValueError):
    """The upload cannot be used; the message names the input and what was expected."""


@dataclass(frozen=True)
class Prepared:
    image: np.ndarray  # 1024x1024x3 uint8, padded
    input_size: np.ndarray  # int32 (h, w)
    original_size: Tuple[int, int]


def decode_upload(data: bytes, *, max_pixels: int, original_size: Optional[Tuple[int, int]] = None) -> Prepared:
    """``image_file`` bytes -> encoder inputs. ``original_size``: the photo's (H, W) when the file
    holds SAM's resized image of it (the client's ``set_image`` uploads that when it is smaller)."""
    if not data:
        raise UploadError("input 'image_file': empty; expected a JPEG, PNG or WebP file")
    try:
        with warnings.catch_warnings():
            # PIL warns above its own MAX_IMAGE_PIXELS and refuses twice that at open(); ours is the
            # cap that counts, checked on the header's size before a pixel is decoded.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
            width, height = image.size
            if width * height > max_pixels:
                raise UploadError(
                    f"input 'image_file': {width}x{height} = {width * height} pixels; at most {max_pixels} (max_image_pixels)"
                )
            pixels = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except UploadError:
        raise
    except Image.DecompressionBombError as exc:
        raise UploadError(f"input 'image_file': {exc}; at most {max_pixels} pixels (max_image_pixels)") from exc
    except Exception as exc:  # PIL's UnidentifiedImageError, OSError (truncated), SyntaxError...
        raise UploadError(f"input 'image_file': cannot decode ({type(exc).__name__}: {exc}); expected a JPEG, PNG or WebP file") from exc
    if original_size is None:
        padded, input_size = prepare_image(pixels)
        return Prepared(padded, input_size, (int(pixels.shape[0]), int(pixels.shape[1])))
    original = (int(original_size[0]), int(original_size[1]))
    if min(original) < 1 or original[0] * original[1] > max_pixels:
        raise UploadError(f"input 'original_size': {list(original)}; expected (H, W) >= 1 with at most {max_pixels} pixels")
    expected = preprocess_shape(*original)
    if tuple(pixels.shape[:2]) != expected:
        raise UploadError(
            f"input 'original_size': {list(original)} resizes to {list(expected)}, but image_file is"
            f" {list(pixels.shape[:2])}; expected SAM's resized image of that photo"
        )
    padded, input_size = prepare_image(pixels)  # longest side already 1024: the resize is the identity
    return Prepared(padded, input_size, original)
