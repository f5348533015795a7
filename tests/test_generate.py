"""generate() against Meta's SamAutomaticMaskGenerator, on the same seeded tiny weights and photos,
through a real tritonserver.

Random weights give weak logits (|logit| ~ 0.1) and speckled masks whose boxes span the image, so
the thresholds are lowered to leave masks (pred_iou_thresh 0 or 0.02, stability_score_offset
0.05, stability_score_thresh 0.3) and, in two of the three runs, box NMS is off (1.0) so that more
than one mask survives to be compared. The grids are small to keep CI short: 6x6 points on dog,
2x2 per crop with one crop layer on groceries (5 embeddings, with small-region removal and COCO
RLE), 3x3 in batches of 4 on truck. The bar: the same number of masks (+-2 %), and a mean IoU
>= 0.98 of each of our masks with SAM's best match among the masks of the same grid point.
"""

from __future__ import annotations

import numpy as np
import pytest

from sam_triton.client import InvalidInputError, MaskGeneratorOptions, SamClient
from sam_triton.client.amg.masks import rle_to_mask

LOW_THRESHOLDS = dict(pred_iou_thresh=0.0, stability_score_offset=0.05, stability_score_thresh=0.3)
RUNS = {
    "dog": dict(points_per_side=6, box_nms_thresh=1.0, output_mode="binary_mask", **LOW_THRESHOLDS),
    "groceries": dict(
        points_per_side=2, crop_n_layers=1, box_nms_thresh=0.7, min_mask_region_area=100, output_mode="coco_rle", **LOW_THRESHOLDS
    ),
    "truck": dict(
        points_per_side=3,
        points_per_batch=4,
        box_nms_thresh=1.0,
        output_mode="uncompressed_rle",
        **dict(LOW_THRESHOLDS, pred_iou_thresh=0.02),
    ),
}
KEYS = {"segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box"}


def as_mask(segmentation, output_mode):
    if output_mode == "binary_mask":
        return segmentation
    if output_mode == "coco_rle":
        from pycocotools import mask as mask_utils

        return mask_utils.decode(segmentation).astype(bool)
    return rle_to_mask(segmentation)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.fixture(scope="module")
def client(grpc_url):
    with SamClient(grpc_url, timeout_s=300) as c:
        yield c


@pytest.mark.parametrize("name", sorted(RUNS))
def test_generate_matches_sam_automatic_mask_generator(client, images, tiny_sam, name):
    params = RUNS[name]
    if params.get("min_mask_region_area"):
        pytest.importorskip("cv2")  # SAM's own small-region removal needs OpenCV; ours does not
    if params["output_mode"] == "coco_rle":
        pytest.importorskip("pycocotools")
    from segment_anything import SamAutomaticMaskGenerator

    image = images[name]
    ours = client.generate(image, **params)
    ref = SamAutomaticMaskGenerator(tiny_sam, **params).generate(image)
    assert ref, "the reference kept no mask: the test would compare nothing"
    assert abs(len(ours) - len(ref)) <= 0.02 * len(ref), f"{name}: {len(ours)} masks, SAM {len(ref)}"
    assert all(set(record) == KEYS for record in ours)
    ref_by_point = {}
    for record in ref:
        ref_by_point.setdefault(tuple(np.round(record["point_coords"][0], 6)), []).append(record)
    ious = []
    for record in ours:
        mask = as_mask(record["segmentation"], params["output_mode"])
        assert mask.shape == image.shape[:2] and record["area"] == int(mask.sum())
        candidates = ref_by_point.get(tuple(np.round(record["point_coords"][0], 6)), [])
        scored = [(iou(mask, as_mask(r["segmentation"], params["output_mode"])), r) for r in candidates]
        best_iou, best = max(scored, key=lambda pair: pair[0], default=(0.0, None))
        ious.append(best_iou)
        if best is not None and best_iou > 0.98:
            assert abs(record["predicted_iou"] - best["predicted_iou"]) < 1e-3
            assert abs(record["stability_score"] - best["stability_score"]) < 2e-2
            assert record["crop_box"] == best["crop_box"]
    assert float(np.mean(ious)) >= 0.98, f"{name}: mean IoU of matched masks {np.mean(ious):.4f}"


def test_generate_rejects_bad_options_before_sending(client, images):
    with pytest.raises(InvalidInputError, match="points_per_sid: is not an option of generate"):
        client.generate(images["dog"], points_per_sid=8)
    with pytest.raises(InvalidInputError, match="output_mode: got 'png'; expected one of binary_mask"):
        client.generate(images["dog"], output_mode="png")
    with pytest.raises(InvalidInputError, match="image: got array of shape"):
        client.generate(np.zeros((10, 10), np.uint8), MaskGeneratorOptions(points_per_side=2))


def test_generate_leaves_the_current_image_alone(client, images):
    client.set_image(images["dog"])
    before = client.predict(point_coords=np.array([[400, 260]]), point_labels=np.array([1]))
    records = client.generate(images["truck"], points_per_side=1, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    assert records and records[0]["segmentation"].shape == images["truck"].shape[:2]
    assert client.original_size == images["dog"].shape[:2]
    after = client.predict(point_coords=np.array([[400, 260]]), point_labels=np.array([1]))
    np.testing.assert_array_equal(before[2], after[2])
