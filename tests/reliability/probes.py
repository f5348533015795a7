"""The reliability suite's probe: a fixed request, its answer, and the check that a server is still
serving as before (same READY models, same python stubs, the same answer)."""

from __future__ import annotations

from typing import Tuple

import numpy as np
import tritonclient.grpc as grpcclient

from sam_triton.client import SamClient
from sam_triton.perf.soak.process_tree import command_name, descendants

#: The probe: a click on the dog photo (800x534), answered through the decoder.
PROBE_CLICK = dict(point_coords=np.array([[400, 260]]), point_labels=np.array([1]))


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


def assert_still_serving(server, reference, images, *, exact: bool = True) -> None:
    """READY, every model READY, the same stub processes, and the probe answered as before."""
    want, stubs = reference
    with grpcclient.InferenceServerClient(server.config.grpc_url) as raw:
        assert raw.is_server_ready(client_timeout=30)
        for model in ("sam_encoder", "sam_decoder", "sam"):
            assert raw.is_model_ready(model, client_timeout=30), f"{model} is not ready"
    assert stub_pids(server) == stubs, "a python stub died (and was restarted)"
    assert_same_probe(probe(server.config.grpc_url, images["dog"]), want, exact=exact)
