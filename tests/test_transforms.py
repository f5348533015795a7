"""The client's numpy/PIL pre- and postprocessing equals segment-anything's torch code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything.utils.transforms import ResizeLongestSide

from sam_triton.client.predictor.transforms import (
    apply_boxes,
    apply_coords,
    postprocess_masks,
    postprocess_masks_transposed,
    prepare_image,
    resize_image,
)

SIZES = [(1200, 1800), (534, 800), (300, 451), (1024, 1024), (2000, 37), (1, 1), (17, 1025)]


@pytest.mark.parametrize("size", SIZES)
def test_resize_equals_resize_longest_side(size):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
    expected = ResizeLongestSide(1024).apply_image(image)
    np.testing.assert_array_equal(resize_image(image), expected)
    padded, input_size = prepare_image(image)
    assert padded.shape == (1024, 1024, 3) and input_size.dtype == np.int32
    assert tuple(input_size) == expected.shape[:2]
    assert not padded[expected.shape[0] :].any() and not padded[:, expected.shape[1] :].any()


def test_real_photo_resize_equals(images):
    for image in images.values():
        np.testing.assert_array_equal(resize_image(image), ResizeLongestSide(1024).apply_image(image))


@pytest.mark.parametrize("size", SIZES)
def test_coords_and_boxes_equal(size):
    transform = ResizeLongestSide(1024)
    coords = np.array([[0.0, 0.0], [size[1] / 3, size[0] / 2], [size[1], size[0]]])
    np.testing.assert_array_equal(apply_coords(coords, size), transform.apply_coords(coords, size))
    boxes = np.array([[1.0, 2.0, size[1] - 1, size[0] - 0.5]])
    np.testing.assert_array_equal(apply_boxes(boxes, size), transform.apply_boxes(boxes, size))


@pytest.mark.parametrize("size", SIZES)
def test_postprocess_equals_sam_postprocess_masks(tiny_sam, size):
    rng = np.random.default_rng(1)
    low_res = rng.normal(scale=4.0, size=(2, 3, 256, 256)).astype(np.float32)
    input_size = ResizeLongestSide.get_preprocess_shape(*size, 1024)
    expected = tiny_sam.postprocess_masks(torch.from_numpy(low_res), input_size, size).numpy()
    actual = postprocess_masks(low_res, input_size, size)
    assert actual.shape == expected.shape == (2, 3, *size)
    assert np.max(np.abs(actual - expected)) <= 1e-4 * np.max(np.abs(expected))
    assert np.mean((actual > 0) == (expected > 0)) >= 0.9999
    transposed = postprocess_masks_transposed(low_res, input_size, size)  # what sam_session encodes
    assert transposed.shape == (2, 3, size[1], size[0]) and transposed.flags.c_contiguous
    assert np.max(np.abs(transposed.swapaxes(-1, -2) - expected)) <= 1e-4 * np.max(np.abs(expected))
    out = np.empty((2, 3, *size), np.float32)
    assert postprocess_masks(low_res, input_size, size, out=out) is out and np.array_equal(out, actual)
