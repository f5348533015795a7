"""generate's numpy building blocks against segment-anything's own (utils/amg.py, torchvision's nms,
OpenCV's connected components, pycocotools) on masks with real shapes: blobs, holes, islands."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything.utils import amg as sam_amg
from torchvision.ops.boxes import batched_nms

from sam_triton.client.amg import geometry as amg_geometry
from sam_triton.client.amg import masks as amg_masks


def blob_masks(rng: np.random.Generator, count: int, h: int, w: int) -> np.ndarray:
    """count x h x w bool: random ellipses (some with holes), plus one empty and one full mask."""
    yy, xx = np.mgrid[:h, :w]
    masks = []
    for _ in range(count):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(2, h / 2), rng.uniform(2, w / 2)
        d = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        mask = d < 1
        if rng.random() < 0.5:
            mask &= d > rng.uniform(0.01, 0.2)  # a hole
        mask |= rng.random((h, w)) < 0.002  # specks: small islands
        masks.append(mask)
    masks += [np.zeros((h, w), bool), np.ones((h, w), bool)]
    return np.stack(masks)


@pytest.mark.parametrize("count", [0, 1, 60, 1200])  # 1200 boxes take torchvision's per-category path
def test_nms_matches_torchvision(count):
    rng = np.random.default_rng(count)
    xy = rng.integers(0, 200, (count, 2))
    boxes = np.concatenate([xy, xy + rng.integers(0, 80, (count, 2))], axis=1)
    if count:
        boxes[: count // 4] = boxes[0]  # exact duplicates
    scores = rng.choice(np.linspace(0, 1, 7), count).astype(np.float32)  # many ties
    for threshold in (0.0, 0.3, 0.7, 1.0):
        ref = batched_nms(torch.as_tensor(boxes).float(), torch.as_tensor(scores), torch.zeros(count), threshold).numpy()
        for block in (3, 256):  # blocks of 3 cross many block boundaries; 256 is generate's
            ours = amg_geometry.nms(boxes, scores, threshold, block=block)
            assert sorted(ours.tolist()) == sorted(ref.tolist())
            assert np.all(np.diff(scores[ours]) <= 0)
            if count <= 1000:  # torchvision's single pass: the same order
                assert ours.tolist() == ref.tolist()


def test_boxes_rle_area_and_stability_match_sam():
    rng = np.random.default_rng(1)
    masks = blob_masks(rng, 12, 37, 53)
    torch_masks = torch.as_tensor(masks)
    np.testing.assert_array_equal(amg_geometry.batched_mask_to_box(masks), sam_amg.batched_mask_to_box(torch_masks).numpy())
    ours, ref = amg_masks.mask_to_rle(masks), sam_amg.mask_to_rle_pytorch(torch_masks)
    assert ours == ref
    for rle, mask in zip(ours, masks):
        np.testing.assert_array_equal(amg_masks.rle_to_mask(rle), sam_amg.rle_to_mask(rle))
        np.testing.assert_array_equal(amg_masks.rle_to_mask(rle), mask)
        assert amg_masks.area_from_rle(rle) == sam_amg.area_from_rle(rle) == int(mask.sum())
    logits = rng.normal(0, 2, (12, 37, 53)).astype(np.float32)
    for offset in (0.05, 1.0):
        np.testing.assert_array_equal(
            amg_masks.calculate_stability_score(logits, 0.0, offset),
            sam_amg.calculate_stability_score(torch.as_tensor(logits), 0.0, offset).numpy(),
        )


@pytest.mark.parametrize("size", [(534, 800), (1200, 1800), (101, 99)])
def test_grids_crops_and_uncrop_match_sam(size):
    for n_layers in (0, 1, 2):
        assert amg_geometry.generate_crop_boxes(size, n_layers, 512 / 1500) == sam_amg.generate_crop_boxes(size, n_layers, 512 / 1500)
        for ours, ref in zip(
            amg_geometry.build_all_layer_point_grids(16, n_layers, 2), sam_amg.build_all_layer_point_grids(16, n_layers, 2)
        ):
            np.testing.assert_array_equal(ours, ref)
    h, w = size
    crop_boxes, _ = amg_geometry.generate_crop_boxes(size, 1, 512 / 1500)
    rng = np.random.default_rng(2)
    for crop in crop_boxes:
        ch, cw = crop[3] - crop[1], crop[2] - crop[0]
        boxes = np.sort(rng.integers(0, min(ch, cw), (40, 4)), axis=1)[:, [0, 1, 2, 3]]
        boxes[:5] = [0, 0, cw - 1, ch - 1]
        np.testing.assert_array_equal(
            amg_geometry.is_box_near_crop_edge(boxes, crop, [0, 0, w, h]),
            sam_amg.is_box_near_crop_edge(torch.as_tensor(boxes), crop, [0, 0, w, h]).numpy(),
        )
        np.testing.assert_array_equal(
            amg_geometry.uncrop_boxes_xyxy(boxes, crop), sam_amg.uncrop_boxes_xyxy(torch.as_tensor(boxes), crop).numpy()
        )
        masks = rng.random((2, ch, cw)) < 0.5
        np.testing.assert_array_equal(
            amg_geometry.uncrop_masks(masks, crop, h, w), sam_amg.uncrop_masks(torch.as_tensor(masks), crop, h, w).numpy()
        )


def test_remove_small_regions_matches_opencv():
    pytest.importorskip("cv2")
    rng = np.random.default_rng(3)
    cases = list(blob_masks(rng, 20, 60, 90)) + [
        rng.random((int(h), int(w))) < d for h, w, d in zip(rng.integers(1, 40, 60), rng.integers(1, 40, 60), rng.uniform(0.05, 0.95, 60))
    ]
    for mask in cases:
        for mode in ("holes", "islands"):
            for area in (1, 5, 30, 400):
                ours, changed = amg_masks.remove_small_regions(mask, area, mode)
                ref, ref_changed = sam_amg.remove_small_regions(mask, area, mode)
                assert changed == ref_changed
                np.testing.assert_array_equal(ours, ref)


def test_coco_rle_matches_sam():
    pytest.importorskip("pycocotools")
    masks = blob_masks(np.random.default_rng(4), 5, 40, 30)
    for rle in amg_masks.mask_to_rle(masks):
        assert amg_masks.coco_encode_rle(rle) == sam_amg.coco_encode_rle(rle)
