"""`sam-triton segment IMAGE --everything` through main(argv) and a real tritonserver."""

from __future__ import annotations

import json

from PIL import Image

from sam_triton.cli.main import main

from .helpers import IMAGES_DIR


def test_segment_everything_writes_an_overlay_and_the_masks(grpc_url, tmp_path, capsys):
    out = tmp_path / "everything"
    code = main(
        [
            "segment",
            str(IMAGES_DIR / "dog.jpg"),
            "--everything",
            "--points-per-side",
            "3",
            "--pred-iou-thresh",
            "0",
            "--stability-score-thresh",
            "0.3",
            "--stability-score-offset",
            "0.05",
            "--box-nms-thresh",
            "1.0",
            "--url",
            grpc_url,
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["everything.png", "masks.json"]
    data = json.loads((out / "masks.json").read_text())
    assert data["image_size"] == [534, 800] and data["masks"]
    first = data["masks"][0]
    assert set(first) == {"segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box"}
    assert first["segmentation"]["size"] == [534, 800] and sum(first["segmentation"]["counts"]) == 534 * 800
    assert Image.open(out / "everything.png").size == (800, 534)
    assert f"{len(data['masks'])} masks -> " in capsys.readouterr().out


def test_segment_everything_refuses_prompts(grpc_url, tmp_path, capsys):
    code = main(["segment", str(IMAGES_DIR / "dog.jpg"), "--everything", "--point", "10,10", "--url", grpc_url, "--out", str(tmp_path)])
    assert code == 1
    assert "--everything: takes no --point or --box" in capsys.readouterr().err
