"""Several prompts for one embedding in one request, and concurrent requests Triton batches.

The multi-prompt request is built with plain tritonclient from the documented contract, as a user
of any gRPC client would build it.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tritonclient.grpc as grpcclient

from sam_triton.build.export.verify import rel_l2
from sam_triton.client import SamClient
from sam_triton.client.predictor.transforms import apply_coords

from .test_fidelity import IOU_ABS, LOGITS_REL_L2


def _input(name, array):
    item = grpcclient.InferInput(name, list(array.shape), {"float32": "FP32"}[str(array.dtype)])
    item.set_data_from_numpy(array)
    return item


def test_several_prompts_in_one_decoder_request(grpc_url, images, predictor_for):
    image = images["truck"]
    predictor = predictor_for("truck", image)
    h, w = image.shape[:2]
    clicks = np.array([[w * 0.2, h * 0.3], [w * 0.5, h * 0.5], [w * 0.8, h * 0.7], [w * 0.6, h * 0.2]])
    # P prompts of N = 2 points each: the click, then SAM's padding point (label -1).
    coords = np.zeros((1, len(clicks), 2, 2), np.float32)
    coords[0, :, 0] = apply_coords(clicks, (h, w))
    labels = np.tile(np.array([1, -1], np.float32), (1, len(clicks), 1))
    embedding = predictor.get_image_embedding().numpy()
    inputs = [
        _input("image_embeddings", embedding),
        _input("point_coords", coords),
        _input("point_labels", labels),
        _input("mask_input", np.zeros((1, len(clicks), 1, 256, 256), np.float32)),
        _input("has_mask_input", np.zeros((1, len(clicks)), np.float32)),
    ]
    with grpcclient.InferenceServerClient(grpc_url) as raw:
        result = raw.infer("sam_decoder", inputs, client_timeout=60)
    iou, low_res = result.as_numpy("iou_predictions"), result.as_numpy("low_res_masks")
    assert iou.shape == (1, len(clicks), 4) and low_res.shape == (1, len(clicks), 4, 256, 256)
    for i, click in enumerate(clicks):
        _, ref_iou, ref_logits = predictor.predict(point_coords=click[None], point_labels=np.array([1]))
        assert rel_l2(low_res[0, i, 1:], ref_logits) <= LOGITS_REL_L2
        assert np.max(np.abs(iou[0, i, 1:] - ref_iou)) <= IOU_ABS


def _decoder_stats(url, *, at_least: int = 0, timeout_s: float = 10.0):
    """(inference_count, execution_count) of sam_decoder, once they stop moving and reach ``at_least``.

    Triton records a request's statistics after its response is sent, so a read right after the
    last response can lag behind it."""
    deadline = time.monotonic() + timeout_s
    last = None
    with grpcclient.InferenceServerClient(url) as raw:
        while True:
            stats = raw.get_inference_statistics("sam_decoder", as_json=True)["model_stats"][0]
            now = int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))
            if (now == last and now[0] >= at_least) or time.monotonic() > deadline:
                return now
            last = now
            time.sleep(0.2)


def test_concurrent_requests_are_batched_and_correct(grpc_url, images):
    """32 clicks from 16 threads sharing one client: answers equal the sequential ones, and the
    server's statistics show fewer executions than requests (dynamic batching merged them)."""
    image = images["dog"]
    h, w = image.shape[:2]
    points = [np.array([[w * (0.1 + 0.8 * k / 31), h * 0.5]]) for k in range(32)]
    with SamClient(grpc_url) as client:
        client.set_image(image)
        expected = [client.predict(point_coords=p, point_labels=np.array([1])) for p in points]
        before = _decoder_stats(grpc_url)
        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(lambda p: client.predict(point_coords=p, point_labels=np.array([1])), points))
        after = _decoder_stats(grpc_url, at_least=before[0] + len(points))
        inferences, executions = (a - b for a, b in zip(after, before))
    for got, want in zip(results, expected):
        assert np.mean(got[0] == want[0]) >= 0.999
        np.testing.assert_allclose(got[1], want[1], atol=1e-5)
        assert rel_l2(got[2], want[2]) <= LOGITS_REL_L2
    assert inferences == len(points)
    assert executions < inferences, f"Triton ran {executions} executions for {inferences} requests: no batching"
