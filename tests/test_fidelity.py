"""Fidelity against Meta's SamPredictor on the same seeded weights, through a real tritonserver.

The bar: low-res logits relative L2 error <= 1e-4, IoU predictions within 1e-4, and >= 99.9 % of
full-resolution mask pixels equal; through SamClient.predict (sam_encoder then sam_decoder) and
through SamClient.segment (the sam ensemble).
"""

from __future__ import annotations

import numpy as np
import pytest

from sam_triton.client import SamClient
from sam_triton.perf.studies.fidelity import (  # the prompt set of the end-to-end issue, shared with the fidelity study
    prompts_for,
)

from .fidelity_checks import (  # noqa: F401  (run here, on the session server)
    assert_same,
    test_predict_matches_sampredictor,
    test_second_pass_with_mask_input,
    test_segment_through_ensemble_matches_sampredictor,
)


@pytest.fixture(scope="module")
def client(grpc_url):
    with SamClient(grpc_url, timeout_s=120) as c:
        yield c


def test_bgr_image_format_matches(client, images, predictor_for):
    image = images["dog"]
    predictor = predictor_for("dog", image)
    prompt = prompts_for(*image.shape[:2])["one_point"]
    client.set_image(np.ascontiguousarray(image[..., ::-1]), image_format="BGR")
    assert_same(client.predict(**prompt), predictor.predict(**prompt), "dog/BGR")
