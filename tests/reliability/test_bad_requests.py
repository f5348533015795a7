"""Requests that bypass our client (raw tritonclient, gRPC and HTTP) and break the tensor contract:
each gets a Triton error with the exact text a user sees; the server stays READY, its python stubs
keep running (same processes) and the next good request is answered exactly as before.

Value errors of single inputs (input_size of 0 or > 1024, NaN coordinates, labels, mismatched
prompt counts) are in tests/test_server_errors.py; this adds dtypes, dims, missing and extra
inputs, oversized requests and the ensemble's path.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from ..helpers import decoder_arrays, encoder_arrays, prompt_arrays, triton_inputs
from .probes import assert_still_serving


def _ensemble_arrays(**overrides):
    arrays = {**encoder_arrays(), **decoder_arrays()}
    del arrays["image_embeddings"]
    arrays.update(overrides)
    return arrays


def _without(arrays, name):
    return {k: v for k, v in arrays.items() if k != name}


BAD_REQUESTS = {
    "image as FP32": (
        "sam_encoder",
        encoder_arrays(image=np.zeros((1, 1024, 1024, 3), np.float32)),
        "inference input 'image' data-type is 'FP32', but model 'sam_encoder' expects 'UINT8'",
    ),
    "coordinates as FP64": (
        "sam_decoder",
        decoder_arrays(point_coords=np.full((1, 1, 2, 2), 100.0)),
        "inference input 'point_coords' data-type is 'FP64', but model 'sam_decoder' expects 'FP32'",
    ),
    "image of 512x512": (
        "sam_encoder",
        encoder_arrays(image=np.zeros((1, 512, 512, 3), np.uint8)),
        "unexpected shape for input 'image' for model 'sam_encoder'. Expected [-1,1024,1024,3], got [1,512,512,3]",
    ),
    "coordinates of 3 numbers": (
        "sam_decoder",
        decoder_arrays(point_coords=np.full((1, 1, 2, 3), 100.0, np.float32)),
        "unexpected shape for input 'point_coords' for model 'sam_decoder'. Expected [-1,-1,-1,2], got [1,1,2,3]",
    ),
    "input_size missing": (
        "sam_encoder",
        _without(encoder_arrays(), "input_size"),
        "expected 2 inputs but got 1 inputs for model 'sam_encoder'",
    ),
    "has_mask_input missing": (
        "sam_decoder",
        _without(decoder_arrays(), "has_mask_input"),
        "missing required input(s) ['has_mask_input']",
    ),
    "an unknown input": (
        "sam_decoder",
        {**decoder_arrays(), "bogus": np.zeros((1, 2), np.float32)},
        "expected 5 inputs but got 6 inputs for model 'sam_decoder'",
    ),
    "65 prompts": ("sam_decoder", decoder_arrays(**prompt_arrays(65, 2)), "input 'point_labels': 65 prompts; at most 64 per request"),
    "400 prompts (105 MB)": (
        "sam_decoder",
        decoder_arrays(**prompt_arrays(400, 2)),
        "input 'point_labels': 400 prompts; at most 64 per request",
    ),
    "17 points": ("sam_decoder", decoder_arrays(**prompt_arrays(1, 17)), "input 'point_labels': 17 points per prompt; at most 16"),
    "no prompt": (
        "sam_decoder",
        decoder_arrays(**prompt_arrays(0, 2)),
        "input 'point_labels': shape [1, 0, 2]; expected at least 1 prompt of at least 1 point",
    ),
    "no point": (
        "sam_decoder",
        decoder_arrays(**prompt_arrays(1, 0)),
        "input 'point_labels': shape [1, 1, 0]; expected at least 1 prompt of at least 1 point",
    ),
    "batch of 9": (
        "sam_decoder",
        {k: np.repeat(v, 9, axis=0) for k, v in decoder_arrays().items()},
        "inference request batch-size must be <= 8 for 'sam_decoder'",
    ),
    "NaN embedding": (
        "sam_decoder",
        decoder_arrays(image_embeddings=np.full((1, 256, 64, 64), np.nan, np.float32)),
        "input 'image_embeddings': contains NaN or infinity; expected finite values",
    ),
    "ensemble: NaN coordinates": (
        "sam",
        _ensemble_arrays(point_coords=np.full((1, 1, 2, 2), np.nan, np.float32)),
        "in ensemble 'sam', input 'point_coords': contains NaN or infinity; expected finite values",
    ),
    "ensemble: infinite mask_input": (
        "sam",
        _ensemble_arrays(mask_input=np.full((1, 1, 1, 256, 256), np.inf, np.float32)),
        "in ensemble 'sam', input 'mask_input': contains NaN or infinity; expected finite values",
    ),
    "ensemble: input_size 0": (
        "sam",
        _ensemble_arrays(input_size=np.array([[0, 1024]], np.int32)),
        "in ensemble 'sam', input 'input_size': got [[0, 1024]]; expected (h, w) each in [1, 1024]",
    ),
    "ensemble: 65 prompts": (
        "sam",
        _ensemble_arrays(**prompt_arrays(65, 2)),
        "in ensemble 'sam', input 'point_labels': 65 prompts; at most 64",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_grpc_request(server, reference, images, case):
    model, arrays, expected = BAD_REQUESTS[case]
    with grpcclient.InferenceServerClient(server.config.grpc_url) as raw:
        with pytest.raises(InferenceServerException) as error:
            raw.infer(model, triton_inputs(arrays), client_timeout=120)
    assert expected in error.value.message()
    assert error.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert_still_serving(server, reference, images)


@pytest.mark.parametrize("case", ["image as FP32", "has_mask_input missing", "65 prompts", "NaN embedding", "ensemble: input_size 0"])
def test_bad_http_request(server, reference, images, case):
    model, arrays, expected = BAD_REQUESTS[case]
    host = server.config.http_url.removeprefix("http://")
    with httpclient.InferenceServerClient(host, network_timeout=120) as raw:
        with pytest.raises(InferenceServerException) as error:
            raw.infer(model, triton_inputs(arrays, httpclient))
    assert expected in error.value.message()
    assert error.value.status() == "400"
    assert_still_serving(server, reference, images)


MALFORMED_HTTP = {
    "not JSON": (b"{not json", "failed to parse the request JSON buffer"),
    "data shorter than its shape": (
        json.dumps({"inputs": [{"name": "input_size", "shape": [1, 2], "datatype": "INT32", "data": [1]}]}).encode(),
        "Unable to parse 'data': Shape does not match true shape of 'data' field",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED_HTTP))
def test_malformed_http_body(server, reference, images, case):
    body, expected = MALFORMED_HTTP[case]
    request = urllib.request.Request(f"{server.config.http_url}/v2/models/sam_encoder/infer", data=body, method="POST")
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=60)
    assert expected in json.loads(error.value.read())["error"]
    assert_still_serving(server, reference, images)
