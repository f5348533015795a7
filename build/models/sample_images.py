"""Real photos that ship with a package, for export checks and the demo when no image is given."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from sam_triton.client.images import load_image

DEFAULT_PHOTO = "chelsea"  # scikit-image's photo of a cat, 451x300


def sample_photo(path: Optional[Path] = None) -> Tuple[str, np.ndarray]:
    """(name, HxWx3 uint8 RGB): the file at ``path``, else scikit-image's ``data.chelsea()``."""
    if path is not None:
        return str(path), load_image(Path(path))
    try:
        from skimage import data
    except ImportError as exc:
        raise RuntimeError(
            "no image given and scikit-image (which ships the default photo) is not installed:"
            " pass --image PATH or pip install 'sam-triton[build]'"
        ) from exc
    return f"skimage.data.{DEFAULT_PHOTO}()", np.ascontiguousarray(getattr(data, DEFAULT_PHOTO)())
