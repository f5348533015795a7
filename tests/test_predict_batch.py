"""predict_batch: P prompts of one image in as few decoder requests as the limits allow, each row
equal to predict's answer for that prompt (checked through a real tritonserver and its statistics)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sam_triton.build.export.verify import rel_l2
from sam_triton.client import InvalidInputError, Limits, SamClient

from .triton_counts import settled


def ragged_prompts(h, w):
    """Five prompts: three single clicks (2 decoder rows each), a box (2 rows), two clicks + box (4 rows)."""
    coords = [
        np.array([[w * 0.2, h * 0.3]]),
        np.array([[w * 0.5, h * 0.5]]),
        None,
        np.array([[w * 0.7, h * 0.6]]),
        np.array([[w * 0.4, h * 0.4], [w * 0.1, h * 0.9]]),
    ]
    labels = [np.array([1]), np.array([1]), None, np.array([0]), np.array([1, 0])]
    boxes = [None, None, np.array([w * 0.1, h * 0.1, w * 0.9, h * 0.8]), None, np.array([w * 0.05, h * 0.1, w * 0.8, h * 0.95])]
    return coords, labels, boxes


@pytest.mark.parametrize("multimask", [True, False])
def test_predict_batch_rows_equal_predict_and_respect_the_limits(grpc_url, images, multimask):
    image = images["truck"]
    coords, labels, boxes = ragged_prompts(*image.shape[:2])
    with SamClient(grpc_url, transport="grpc", limits=Limits(max_prompts=2)) as client:
        client.set_image(image)
        before = settled(grpc_url, "sam_decoder")  # earlier tests' requests all recorded
        masks, iou, logits = client.predict_batch(point_coords=coords, point_labels=labels, boxes=boxes, multimask_output=multimask)
        # grouped by decoder rows: click, click, box, click have 2 each -> 2 requests of <= 2 prompts;
        # two clicks + box have 4 -> 1 request
        sent = settled(grpc_url, "sam_decoder", at_least=dataclasses.replace(before, succeeded=before.succeeded + 3)) - before
        assert (sent.succeeded, sent.failed) == (3, 0)
        c = 3 if multimask else 1
        assert masks.shape == (5, c) + image.shape[:2] and iou.shape == (5, c) and logits.shape == (5, c, 256, 256)
        for i in range(5):
            one = client.predict(point_coords=coords[i], point_labels=labels[i], box=boxes[i], multimask_output=multimask)
            assert np.mean(masks[i] == one[0]) >= 0.9999
            np.testing.assert_allclose(iou[i], one[1], atol=1e-5)
            assert rel_l2(logits[i], one[2]) <= 1e-5
        stacked = client.predict_batch(
            point_coords=np.stack([coords[0], coords[1]]),
            point_labels=np.array([[1], [1]]),
            mask_inputs=logits[:2, :1],
            multimask_output=multimask,
        )
        assert stacked[0].shape[0] == 2


def test_predict_batch_names_the_bad_prompt(grpc_url, images):
    image = images["dog"]
    with SamClient(grpc_url) as client:
        client.set_image(image)
        with pytest.raises(InvalidInputError, match=r"boxes: has 1 entries but point_coords has 2"):
            client.predict_batch(point_coords=[np.array([[1, 1]]), np.array([[2, 2]])], point_labels=[[1], [1]], boxes=[[0, 0, 5, 5]])
        with pytest.raises(InvalidInputError, match=r"point_coords\[1\]: has coordinates outside the image"):
            client.predict_batch(point_coords=[np.array([[1, 1]]), np.array([[5000, 2]])], point_labels=[[1], [1]])
        with pytest.raises(InvalidInputError, match=r"point_coords: no prompts given"):
            client.predict_batch()
