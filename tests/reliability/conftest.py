"""Helpers of the reliability suite: a fixed probe request and its answer, raw tritonclient
requests that bypass our client, and the check that a server is still serving as before."""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from sam_triton.client import SamClient
from sam_triton.perf.soak.process_tree import command_name, descendants

#: The probe: a click on the dog photo (800x534), answered through the decoder.
PROBE_CLICK = dict(point_coords=np.array([[400, 260]]), point_labels=np.array([1]))
TRITON_DTYPES = {"uint8": "UINT8", "int32": "INT32", "float32": "FP32", "float64": "FP64", "int64": "INT64"}


def raw_inputs(arrays: Dict[str, np.ndarray], module=grpcclient):
    """tritonclient InferInputs for ``arrays`` (gRPC, or ``tritonclient.http``), each with its array's dtype."""
    items = []
    for name, array in arrays.items():
        item = module.InferInput(name, list(array.shape), TRITON_DTYPES[str(array.dtype)])
        item.set_data_from_numpy(array)
        items.append(item)
    return items


def probe(url: str, image: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The probe's (masks, scores, logits) through a fresh gRPC-transport client."""
    with SamClient(url, transport="grpc", timeout_s=120) as client:
        client.set_image(image)
        return client.predict(**PROBE_CLICK)


def stub_pids(server) -> Tuple[int, ...]:
    """The server's python-backend stub processes (one per model instance)."""
    return tuple(sorted(p for p in descendants(server.process.pid) if command_name(p).startswith("triton_python")))


def assert_same_probe(got, want, *, exact: bool = True) -> None:
    """The probe's answer equals the reference: bit for bit, or (``exact=False``, for a request
    Triton may have batched with others) logits within 1e-5 and masks on 99.99 % of pixels."""
    if exact:
        for name, a, b in zip(("masks", "scores", "logits"), got, want):
            assert a.shape == b.shape and np.array_equal(a, b), f"the probe's {name} changed"
        return
    assert got[0].shape == want[0].shape and np.mean(got[0] == want[0]) >= 0.9999
    np.testing.assert_allclose(got[1], want[1], atol=1e-5)
    np.testing.assert_allclose(got[2], want[2], atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="session")
def reference(server, images):
    """(probe answer, stub pids) of the session server, taken before any reliability test disturbs it."""
    return probe(server.config.grpc_url, images["dog"]), stub_pids(server)


def assert_still_serving(server, reference, images, *, exact: bool = True) -> None:
    """READY, every model READY, the same stub processes, and the probe answered as before."""
    want, stubs = reference
    with grpcclient.InferenceServerClient(server.config.grpc_url) as raw:
        assert raw.is_server_ready(client_timeout=30)
        for model in ("sam_encoder", "sam_decoder", "sam"):
            assert raw.is_model_ready(model, client_timeout=30), f"{model} is not ready"
    assert stub_pids(server) == stubs, "a python stub died (and was restarted)"
    assert_same_probe(probe(server.config.grpc_url, images["dog"]), want, exact=exact)
