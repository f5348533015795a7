"""The fidelity tests against Meta's SamPredictor (same seeded weights), shared by the modules that run
them on a server of their own: test_fidelity.py (the python runtime) and test_openvino_fidelity.py
(OpenVINO FP32). Each of those defines the ``client`` fixture these tests take and imports them.

The bar: low-res logits relative L2 error <= 1e-4, IoU predictions within 1e-4, and >= 99.9 % of
full-resolution mask pixels equal.
"""

from __future__ import annotations

import numpy as np
import pytest

from sam_triton.build.export.verify import rel_l2
from sam_triton.perf.studies.fidelity import (  # the prompt set of the end-to-end issue, shared with the fidelity study
    prompts_for,
    second_pass_prompts,
)

from .helpers import IMAGE_NAMES

LOGITS_REL_L2 = 1e-4
IOU_ABS = 1e-4
MASK_AGREEMENT = 0.999


def assert_same(actual, expected, what: str) -> None:
    masks, iou, logits = actual
    ref_masks, ref_iou, ref_logits = expected
    assert masks.shape == ref_masks.shape and masks.dtype == ref_masks.dtype, what
    assert iou.shape == ref_iou.shape and logits.shape == ref_logits.shape, what
    assert iou.dtype == ref_iou.dtype == np.float32 and logits.dtype == ref_logits.dtype == np.float32, what
    err = rel_l2(logits, ref_logits)
    assert err <= LOGITS_REL_L2, f"{what}: low-res logits relative L2 error {err:.3g}"
    iou_err = float(np.max(np.abs(iou - ref_iou)))
    assert iou_err <= IOU_ABS, f"{what}: IoU prediction error {iou_err:.3g}"
    if masks.dtype != bool:  # return_logits: full-resolution logits
        full_err = rel_l2(masks, ref_masks)
        assert full_err <= LOGITS_REL_L2, f"{what}: full-resolution logits relative L2 error {full_err:.3g}"
        masks, ref_masks = masks > 0, ref_masks > 0
    agreement = float(np.mean(masks == ref_masks))
    assert agreement >= MASK_AGREEMENT, f"{what}: only {agreement:.5%} of mask pixels agree"


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_predict_matches_sampredictor(client, images, predictor_for, name):
    image = images[name]
    predictor = predictor_for(name, image)
    client.set_image(image)
    assert client.original_size == predictor.original_size
    assert client.input_size == predictor.input_size
    embedding_err = rel_l2(client.get_image_embedding(), predictor.get_image_embedding().numpy())
    assert embedding_err <= LOGITS_REL_L2, f"{name}: embedding relative L2 error {embedding_err:.3g}"
    for prompt_name, prompt in prompts_for(*image.shape[:2]).items():
        for multimask in (True, False):
            what = f"{name}/{prompt_name}/multimask={multimask}"
            assert_same(client.predict(multimask_output=multimask, **prompt), predictor.predict(multimask_output=multimask, **prompt), what)
    logits_prompt = prompts_for(*image.shape[:2])["one_point"]
    assert_same(
        client.predict(return_logits=True, **logits_prompt), predictor.predict(return_logits=True, **logits_prompt), f"{name}/return_logits"
    )


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_second_pass_with_mask_input(client, images, predictor_for, name):
    """SAM's iterative refinement: the best low-res logits of one pass feed the next."""
    image = images[name]
    predictor = predictor_for(name, image)
    client.set_image(image)
    first, second = second_pass_prompts(*image.shape[:2])
    _, scores, logits = client.predict(multimask_output=True, **first)
    _, ref_scores, ref_logits = predictor.predict(multimask_output=True, **first)
    assert int(np.argmax(scores)) == int(np.argmax(ref_scores))
    best = int(np.argmax(ref_scores))
    assert_same(
        client.predict(mask_input=logits[best][None], multimask_output=False, **second),
        predictor.predict(mask_input=ref_logits[best][None], multimask_output=False, **second),
        f"{name}/mask_input",
    )


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_segment_through_ensemble_matches_sampredictor(client, images, predictor_for, name):
    image = images[name]
    predictor = predictor_for(name, image)
    for prompt_name, prompt in prompts_for(*image.shape[:2]).items():
        assert_same(client.segment(image, **prompt), predictor.predict(**prompt), f"{name}/{prompt_name}/ensemble")
