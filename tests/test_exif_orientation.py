"""Phone photos: pixels stored sideways with an EXIF orientation tag are read upright, by
load_image and so by every command that reads a photo (segment, demo, perf, the export check)."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from sam_triton.cli.main import main
from sam_triton.client.images import load_image

from .helpers import IMAGES_DIR

ORIENTATION_TAG = 0x0112
#: EXIF orientation -> how the camera stored the upright picture (the viewer undoes it):
#: 6 "rotate 90 CW to view" stores it turned 90 degrees counter-clockwise, 8 the other way.
STORED_AS = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def sideways_jpeg(path, orientation: int):
    """The dog photo's pixels turned as a phone stores them, tagged with ``orientation``; returns the upright pixels."""
    with Image.open(IMAGES_DIR / "dog.jpg") as upright:
        exif = Image.Exif()
        exif[ORIENTATION_TAG] = orientation
        upright.transpose(STORED_AS[orientation]).save(path, quality=95, exif=exif)
        return np.asarray(upright.convert("RGB"))


@pytest.mark.parametrize("orientation", sorted(STORED_AS))
def test_load_image_turns_a_tagged_photo_upright(tmp_path, orientation):
    path = tmp_path / "phone.jpg"
    upright = sideways_jpeg(path, orientation)
    with Image.open(path) as stored:  # what is on disk really is sideways, and says so
        assert stored.size == (534, 800) and stored.getexif()[ORIENTATION_TAG] == orientation
    got = load_image(path)
    assert got.shape == upright.shape == (534, 800, 3) and got.dtype == np.uint8
    error = np.abs(got.astype(np.int16) - upright).mean()
    assert error < 2.5, f"mean abs difference {error:.2f} from the upright photo: more than JPEG's re-encoding"
    assert np.abs(got.astype(np.int16) - upright[::-1, ::-1]).mean() > 10 * error  # upright, not upside down


def test_segment_masks_a_tagged_photo_at_its_upright_size(tmp_path, grpc_url):
    path = tmp_path / "phone.jpg"
    sideways_jpeg(path, 6)
    out = tmp_path / "out"
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(
            ["segment", str(path), "--point", "400,260", "--box", "100,50,700,500", "--single-mask", "--url", grpc_url, "--out", str(out)]
        )
    assert code == 0
    with Image.open(out / "mask_0.png") as mask, Image.open(out / "overlay.png") as overlay:
        assert mask.size == overlay.size == (800, 534)  # the upright photo's width x height, where the prompts are
    assert len(json.loads((out / "scores.json").read_text())["scores"]) == 1
