"""`sam-triton demo` itself, end to end: the tiny preset, the default (openvino) runtime and
repository, the real embedded tritonserver, a real photo; its masks, overlays and scores are
checked on disk, and the checked-in model_repository/ is left as it was."""

from __future__ import annotations

import contextlib
import io
import json
import re

import numpy as np
from PIL import Image

from sam_triton.cli.main import main

from .helpers import IMAGES_DIR, checked_in_snapshot


def test_demo_command_writes_masks_overlays_and_scores(tmp_path, cache_dir, tiny_onnx):
    out, photo = tmp_path / "demo_out", IMAGES_DIR / "dog.jpg"
    checked_in = checked_in_snapshot()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["demo", "--preset", "tiny", "--image", str(photo), "--out", str(out), "--cache-dir", str(cache_dir)])
    assert code == 0, printed.getvalue()
    # the repository went to the cache (the default), the checked-in model_repository/ is untouched
    assert (cache_dir / "model_repository" / "sam_encoder" / "1" / "model.onnx").is_file()
    assert checked_in_snapshot() == checked_in
    width, height = Image.open(photo).size
    for prompt, masks in (("point", 3), ("box", 1)):  # the point asks for SAM's 3 candidates, the box (ensemble) for one
        folder = out / prompt
        scores = json.loads((folder / "scores.json").read_text())
        assert len(scores["scores"]) == masks and all(np.isfinite(scores["scores"])) and 0 <= scores["best"] < masks
        assert scores["masks"] == [str(folder / f"mask_{i}.png") for i in range(masks)]
        for i, pixels in enumerate(scores["mask_pixels"]):
            with Image.open(folder / f"mask_{i}.png") as mask:
                assert mask.size == (width, height) and mask.mode == "L"
                assert int(np.count_nonzero(np.asarray(mask))) == pixels
        with Image.open(folder / "overlay.png") as overlay:
            assert overlay.size == (width, height) and overlay.mode == "RGB"
        assert f"{prompt} prompt: predicted IoU {', '.join(f'{s:.4f}' for s in scores['scores'])}" in printed.getvalue()
    # time to first mask: opening the photo + the first click's encode and decode, the decoder's share printed
    first = json.loads((out / "time_to_first_mask.json").read_text())
    assert 0 < first["open_s"] < first["seconds"] and 0 < first["decoder_s"] < first["seconds"]
    assert abs(first["decoder_share"] - first["decoder_s"] / first["seconds"]) < 1e-3
    assert re.search(
        r"time to first mask \(tiny \(random weights\), openvino fp32\): \d+\.\d\d s \(opening the photo \d+\.\d\d s, the decoder \d+\.\d{3} s: \d+\.\d %\)",
        printed.getvalue(),
    ), printed.getvalue()
