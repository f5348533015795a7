"""Time to first mask: what a user waits for between opening a photo and seeing the first click's masks.

Served: ``SamClient.set_image`` (the client's resize and padding, the encoder request) and the
first click's ``predict`` (the decoder request and the upsampling to the photo's size), per photo,
one at a time; the decoder's part is the same click predicted again on the image already set.
In-process: the baseline's encoder p50 plus its decoder p50 (the same sum, without gRPC).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np

from sam_triton.client.contract import DECODER_MODEL, ENCODER_MODEL

from .baselines import RUNNER_NAMES, Baseline

#: the first click: the middle of the photo, as a user's first try often is
DECODER_REPEATS = 3


@dataclass(frozen=True)
class FirstMask:
    """One runner's time to first mask (median over the photos) and its decoder part, in seconds."""

    runner: str
    seconds: float
    decoder_s: float
    how: str

    @property
    def decoder_share(self) -> float:
        return self.decoder_s / self.seconds if self.seconds else 0.0


def first_click(height: int, width: int) -> dict:
    return {"point_coords": np.array([[width * 0.5, height * 0.5]]), "point_labels": np.array([1])}


def served_first_mask(url: str, images: Sequence[np.ndarray], label: str, *, timeout_s: float = 600.0) -> FirstMask:
    """Time to first mask through the server at ``url`` (median over ``images``)."""
    from sam_triton.client import SamClient

    totals: List[float] = []
    decoders: List[float] = []
    with SamClient(url, timeout_s=timeout_s) as client:
        for image in images:
            prompt = first_click(*image.shape[:2])
            start = time.perf_counter()
            client.set_image(image)
            client.predict(multimask_output=True, **prompt)
            totals.append(time.perf_counter() - start)
            for _ in range(DECODER_REPEATS):
                start = time.perf_counter()
                client.predict(multimask_output=True, **prompt)
                decoders.append(time.perf_counter() - start)
    return FirstMask(label, statistics.median(totals), statistics.median(decoders), "measured: set_image + the first click's predict")


def in_process_first_masks(baselines: Sequence[Baseline]) -> List[FirstMask]:
    """Encoder p50 + decoder p50 of each in-process runtime that measured both."""
    by_runtime: Dict[str, Dict[str, Baseline]] = {}
    for baseline in baselines:
        by_runtime.setdefault(baseline.runtime, {})[baseline.model] = baseline
    out = []
    for runtime, models in by_runtime.items():
        if ENCODER_MODEL in models and DECODER_MODEL in models:
            encoder, decoder = models[ENCODER_MODEL].percentile_us(50) / 1e6, models[DECODER_MODEL].percentile_us(50) / 1e6
            out.append(FirstMask(RUNNER_NAMES.get(runtime, runtime), encoder + decoder, decoder, "encoder p50 + decoder p50"))
    return out


def first_mask_table(model_type: str, first_masks: Sequence[FirstMask]) -> str:
    lines = ["| runner | model type | time to first mask (s) | decoder (s) | decoder share | how |", "|---|---|---|---|---|---|"]
    lines += [
        f"| {f.runner} | `{model_type}` | {f.seconds:.3f} | {f.decoder_s:.3f} | {100 * f.decoder_share:.1f} % | {f.how} |"
        for f in first_masks
    ]
    return "\n".join(lines)
