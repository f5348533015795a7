"""Check exported graphs with ONNX Runtime against Meta's ``SamPredictor`` (MobileSAM's for vit_t) on a real image.

Every build step checks its own output before it returns (as segment-anything's export script
does): the ONNX files are run through ONNX Runtime, fed exactly as the Triton client feeds them,
and compared with the PyTorch reference. Disagreement raises with the figures.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

import numpy as np

from sam_triton.client import contract
from sam_triton.client.contract import DEFAULT_LIMITS
from sam_triton.client.predictor.prompts import encode_prompt, select_outputs
from sam_triton.client.predictor.requests import prompt_request
from sam_triton.client.predictor.transforms import prepare_image

from .exporter import DECODER_FILE, ENCODER_FILE

log = logging.getLogger(__name__)

#: The bar of the end-to-end issue: relative L2 of embeddings/logits and absolute IoU error.
REL_L2_TOLERANCE = 1e-4
IOU_TOLERANCE = 1e-4


class ExportCheckError(RuntimeError):
    """ONNX Runtime and PyTorch disagree beyond the tolerance; the message holds the figures."""


@dataclass
class CheckReport:
    """Errors of ONNX Runtime against SamPredictor, per quantity, and the times they took."""

    embedding_rel_l2: float = 0.0
    logits_rel_l2: Dict[str, float] = field(default_factory=dict)
    iou_abs: Dict[str, float] = field(default_factory=dict)
    seconds: Dict[str, float] = field(default_factory=dict)

    @property
    def worst_logits_rel_l2(self) -> float:
        return max(self.logits_rel_l2.values(), default=0.0)

    @property
    def worst_iou_abs(self) -> float:
        return max(self.iou_abs.values(), default=0.0)

    def as_dict(self) -> dict:
        return {
            "embedding_rel_l2": self.embedding_rel_l2,
            "logits_rel_l2": self.logits_rel_l2,
            "iou_abs": self.iou_abs,
            "seconds": self.seconds,
        }


def rel_l2(actual: np.ndarray, expected: np.ndarray) -> float:
    """||actual - expected|| / ||expected||, in float64."""
    expected = np.asarray(expected, np.float64)
    diff = float(np.linalg.norm(np.asarray(actual, np.float64) - expected))
    return diff / max(float(np.linalg.norm(expected)), 1e-12)


def mask_iou(actual: np.ndarray, expected: np.ndarray) -> float:
    """IoU of the masks ``logits > 0`` (boolean masks work as they are); 1.0 when both are empty."""
    a, b = actual > 0, expected > 0
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def check_prompts(height: int, width: int) -> Dict[str, dict]:
    """A point, fg/bg points, a box and box + point, in original-image pixels."""
    cx, cy = width / 2, height / 2
    return {
        "one_point": {"point_coords": np.array([[cx, cy]]), "point_labels": np.array([1])},
        "fg_bg_points": {
            "point_coords": np.array([[cx, cy], [width * 0.25, height * 0.3], [width * 0.8, height * 0.7]]),
            "point_labels": np.array([1, 0, 1]),
        },
        "box": {"box": np.array([width * 0.2, height * 0.2, width * 0.7, height * 0.8])},
        "box_point": {
            "box": np.array([width * 0.2, height * 0.2, width * 0.7, height * 0.8]),
            "point_coords": np.array([[width * 0.45, height * 0.5]]),
            "point_labels": np.array([1]),
        },
    }


def ort_session(path: Path, threads: int = 0):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def verify_onnx(sam, onnx_dir: Path, image: np.ndarray) -> CheckReport:
    """Run both graphs through ONNX Runtime on ``image`` and compare with SamPredictor.

    Raises ``ExportCheckError`` when the embedding or any prompt's logits differ by more than
    ``REL_L2_TOLERANCE`` (relative L2), or IoU predictions by more than ``IOU_TOLERANCE``.
    """
    from ..models.mobile_sam import predictor as reference_predictor

    onnx_dir = Path(onnx_dir)
    report = CheckReport()
    predictor = reference_predictor(sam)
    start = time.perf_counter()
    predictor.set_image(image)
    report.seconds["torch_encoder"] = round(time.perf_counter() - start, 3)
    reference = predictor.features.detach().cpu().numpy()

    padded, input_size = prepare_image(image)
    encoder = ort_session(onnx_dir / ENCODER_FILE)
    start = time.perf_counter()
    (embedding,) = encoder.run(None, {contract.IMAGE.name: padded[None], contract.INPUT_SIZE.name: input_size[None]})
    report.seconds["ort_encoder"] = round(time.perf_counter() - start, 3)
    report.embedding_rel_l2 = rel_l2(embedding, reference)

    decoder = ort_session(onnx_dir / DECODER_FILE)
    original_size = image.shape[:2]
    for name, prompt in check_prompts(*original_size).items():
        _expected_masks, expected_iou, expected_logits = predictor.predict(multimask_output=True, **prompt)
        encoded = encode_prompt(original_size, limits=DEFAULT_LIMITS, **prompt)
        feed = prompt_request([encoded])
        feed[contract.IMAGE_EMBEDDINGS.name] = embedding
        start = time.perf_counter()
        iou, logits = decoder.run(None, feed)
        report.seconds[f"ort_decoder_{name}"] = round(time.perf_counter() - start, 4)
        iou, logits = select_outputs(iou[0, 0], logits[0, 0], multimask_output=True)
        report.logits_rel_l2[name] = rel_l2(logits, expected_logits)
        report.iou_abs[name] = float(np.max(np.abs(iou - expected_iou)))

    problems: List[str] = []
    if report.embedding_rel_l2 > REL_L2_TOLERANCE:
        problems.append(f"image embedding relative L2 error {report.embedding_rel_l2:.3g} > {REL_L2_TOLERANCE}")
    for name, err in report.logits_rel_l2.items():
        if err > REL_L2_TOLERANCE:
            problems.append(f"{name}: low-res logits relative L2 error {err:.3g} > {REL_L2_TOLERANCE}")
    for name, err in report.iou_abs.items():
        if err > IOU_TOLERANCE:
            problems.append(f"{name}: IoU prediction error {err:.3g} > {IOU_TOLERANCE}")
    if problems:
        raise ExportCheckError("ONNX Runtime disagrees with SamPredictor:\n  " + "\n  ".join(problems))
    log.info(
        "ONNX check passed: embedding rel L2 %.2e, worst logits rel L2 %.2e, worst IoU error %.2e",
        report.embedding_rel_l2,
        report.worst_logits_rel_l2,
        report.worst_iou_abs,
    )
    return report
