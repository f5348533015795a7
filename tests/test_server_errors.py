"""The python runtime's models answer bad requests with a Triton error and keep serving."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from sam_triton.client import InvalidRequestError, SamClient

from .helpers import decoder_arrays, triton_inputs

BAD_REQUESTS = {
    "input_size zero": (
        "sam_encoder",
        {"image": np.zeros((1, 1024, 1024, 3), np.uint8), "input_size": np.array([[0, 512]], np.int32)},
        "input 'input_size': got [[0, 512]]; expected (h, w) each in [1, 1024]",
    ),
    "input_size too large": (
        "sam_encoder",
        {"image": np.zeros((1, 1024, 1024, 3), np.uint8), "input_size": np.array([[2048, 512]], np.int32)},
        "expected (h, w) each in [1, 1024]",
    ),
    "nan coordinates": (
        "sam_decoder",
        decoder_arrays(point_coords=np.full((1, 1, 2, 2), np.nan, np.float32)),
        "input 'point_coords': contains NaN or infinity",
    ),
    "bad label": ("sam_decoder", decoder_arrays(point_labels=np.array([[[7, -1]]], np.float32)), "input 'point_labels': got values [7.0]"),
    "mismatched prompts": (
        "sam_decoder",
        decoder_arrays(has_mask_input=np.zeros((1, 3), np.float32)),
        "input 'has_mask_input': leading dims [1, 3] do not match point_coords [1, 1]",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_gets_a_triton_error_and_the_server_keeps_serving(grpc_url, images, case):
    model, arrays, expected = BAD_REQUESTS[case]
    with grpcclient.InferenceServerClient(grpc_url) as raw:
        with pytest.raises(InferenceServerException) as error:
            raw.infer(model, triton_inputs(arrays), client_timeout=60)
        assert expected in error.value.message()
        assert raw.is_server_ready() and raw.is_model_ready(model)
    with SamClient(grpc_url) as client:  # the next good request is answered
        client.set_image(images["dog"])
        masks, scores, _ = client.predict(point_coords=np.array([[400, 260]]), point_labels=np.array([1]))
        assert masks.shape == (3, 534, 800) and np.all(np.isfinite(scores))


def test_client_maps_server_rejection_to_invalid_request_error(grpc_url):
    """A request that bypasses client validation is rejected by the server with INVALID_ARGUMENT."""
    with SamClient(grpc_url) as client:
        with pytest.raises(InvalidRequestError, match=r"model 'sam_decoder'.*point_labels") as error:
            client._infer("sam_decoder", decoder_arrays(point_labels=np.array([[[9, -1]]], np.float32)), ("iou_predictions",))
        assert error.value.status == "INVALID_ARGUMENT"
