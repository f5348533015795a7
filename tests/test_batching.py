"""Several prompts for one embedding in one request, and concurrent requests Triton batches.

The multi-prompt request is built with plain tritonclient from the documented contract, as a user
of any gRPC client would build it.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from sam_triton.build.export.verify import rel_l2
from sam_triton.build.repository.assemble import RepositoryOptions, assemble
from sam_triton.client import SamClient
from sam_triton.client.contract import DEFAULT_LIMITS
from sam_triton.client.predictor.transforms import apply_coords

from .fidelity_checks import IOU_ABS, LOGITS_REL_L2
from .helpers import serving, triton_inputs
from .triton_counts import settled

#: The batching test's server lets sam_decoder wait up to a minute for a full batch (max_batch_size
#: requests), so concurrent requests are merged whatever the threads' timing; with the default
#: 500 us delay only those that happen to queue together are, which no test can count on.
PATIENT_QUEUE_DELAY_US = 60_000_000


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
    inputs = triton_inputs(
        {
            "image_embeddings": embedding,
            "point_coords": coords,
            "point_labels": labels,
            "mask_input": np.zeros((1, len(clicks), 1, 256, 256), np.float32),
            "has_mask_input": np.zeros((1, len(clicks)), np.float32),
        }
    )
    with grpcclient.InferenceServerClient(grpc_url) as raw:
        result = raw.infer("sam_decoder", inputs, client_timeout=60)
    iou, low_res = result.as_numpy("iou_predictions"), result.as_numpy("low_res_masks")
    assert iou.shape == (1, len(clicks), 4) and low_res.shape == (1, len(clicks), 4, 256, 256)
    for i, click in enumerate(clicks):
        _, ref_iou, ref_logits = predictor.predict(point_coords=click[None], point_labels=np.array([1]))
        assert rel_l2(low_res[0, i, 1:], ref_logits) <= LOGITS_REL_L2
        assert np.max(np.abs(iou[0, i, 1:] - ref_iou)) <= IOU_ABS


@pytest.fixture(scope="module")
def patient_server(request, tiny_onnx, cache_dir, tmp_path_factory):
    """The tiny preset's python repository with PATIENT_QUEUE_DELAY_US on sam_decoder."""
    options = RepositoryOptions(runtime="python", decoder_queue_delay_us=PATIENT_QUEUE_DELAY_US)
    repository = assemble(tmp_path_factory.mktemp("patient") / "model_repository", options, onnx_dir=tiny_onnx[0])
    yield from serving(request, repository, cache_dir, tmp_path_factory.mktemp("logs") / "patient-tritonserver.log")


def test_concurrent_requests_are_batched_and_correct(grpc_url, patient_server, images):
    """32 clicks from 16 threads sharing one client: answers equal the sequential ones (from the
    session server), and Triton ran them as 4 full batches of max_batch_size (8) requests."""
    image = images["dog"]
    h, w = image.shape[:2]
    points = [np.array([[w * (0.1 + 0.8 * k / 31), h * 0.5]]) for k in range(32)]
    with SamClient(grpc_url) as client:
        client.set_image(image)
        expected = [client.predict(point_coords=p, point_labels=np.array([1])) for p in points]
    url = patient_server.config.grpc_url
    with SamClient(url) as client:
        client.set_image(image)
        before = settled(url, "sam_decoder")
        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(lambda p: client.predict(point_coords=p, point_labels=np.array([1])), points))
        ran = settled(url, "sam_decoder", at_least=dataclasses.replace(before, succeeded=before.succeeded + len(points))) - before
    for got, want in zip(results, expected):
        assert np.mean(got[0] == want[0]) >= 0.999
        np.testing.assert_allclose(got[1], want[1], atol=1e-5)
        assert rel_l2(got[2], want[2]) <= LOGITS_REL_L2
    assert (ran.succeeded, ran.failed, ran.inferences) == (len(points), 0, len(points))
    batch = DEFAULT_LIMITS.max_batch_size
    assert ran.executions == len(points) // batch, (
        f"Triton ran {ran.executions} executions for {len(points)} requests, not full batches of {batch}"
    )
