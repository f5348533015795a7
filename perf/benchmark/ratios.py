"""The headline ratios, each from figures measured side by side in one run.

- serving overhead (per model) = Triton gRPC p50 latency at concurrency 1 / in-process p50
  latency of the engine the model is served on (ONNX Runtime, or OpenVINO at its precision; the
  ensemble's is its encoder's): what serving costs over calling the same graph yourself.
- dynamic-batching gain = sam_decoder throughput at concurrency 8 / at concurrency 1, for the
  mixed prompts and for single clicks (equal shapes: the requests Triton can batch).
- ensemble vs separate calls = sam p50 at concurrency 1 / (sam_encoder p50 + sam_decoder p50 at
  concurrency 1): below 1 the ensemble saves the embedding's round trip.
- ONNX Runtime speed-up over PyTorch (per model) = PyTorch p50 / ONNX Runtime p50, in-process.
- OpenVINO FP32 (and BF16, where measured) speed-up over ONNX Runtime (encoder, decoder) =
  ONNX Runtime p50 / OpenVINO p50, in-process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Mapping, Optional, Sequence

from sam_triton.client.contract import DECODER_MODEL, ENCODER_MODEL, ENSEMBLE_MODEL

from .analyzer import Level, Sweep
from .baselines import RUNNER_NAMES, Baseline
from .input_data import SINGLE_CLICKS

MODELS = (ENCODER_MODEL, DECODER_MODEL, ENSEMBLE_MODEL)
BATCHING_LEVELS = (1, 8)


@dataclass(frozen=True)
class Ratio:
    """A named ratio, the figures it divides (human-readable), or why it could not be computed."""

    name: str
    value: Optional[float]
    formula: str
    missing: str = ""


def _level(sweeps: Mapping[str, Sweep], label: str, concurrency: int = 1) -> Optional[Level]:
    sweep = sweeps.get(label)
    return sweep.at(concurrency) if sweep else None


def _triton_p50(sweeps: Mapping[str, Sweep], model: str) -> Optional[float]:
    level = _level(sweeps, model)
    return level.p50_us if level else None


def _unstable_note(levels: Sequence[Optional[Level]]) -> str:
    """' († from a level perf_analyzer could not stabilize)' where that applies."""
    return " († from a level perf_analyzer could not stabilize)" if any(lv is not None and not lv.stable for lv in levels) else ""


def _baseline_p50(baselines: Sequence[Baseline], runtime: str, model: str) -> Optional[float]:
    found = [b for b in baselines if b.runtime == runtime and b.model == model]
    return found[0].percentile_us(50) if found else None


def _divide(name: str, top: Optional[float], bottom: Optional[float], formula: str, missing: str, note: str = "") -> Ratio:
    if top is None or bottom is None or bottom <= 0:
        return Ratio(name, None, formula, missing)
    return Ratio(name, top / bottom, f"{formula} = {top / 1e3:.1f} ms / {bottom / 1e3:.1f} ms{note}")


def _batching_gain(label: str, sweep: Optional[Sweep]) -> Ratio:
    name = f"dynamic-batching gain, {label}" + (" (mixed prompts)" if label == DECODER_MODEL else "")
    low, high = (sweep.at(c) if sweep else None for c in BATCHING_LEVELS)
    if not (low and high):
        return Ratio(name, None, "throughput at c=8 / c=1", f"needs {label} measured at concurrency 1 and 8")
    return Ratio(
        name,
        high.throughput / low.throughput,
        f"throughput at c=8 / c=1 = {high.throughput:.2f} / "
        f"{low.throughput:.2f} req/s; avg server batch {high.server.avg_batch:.2f} at c=8" + _unstable_note([low, high]),
    )


def headline_ratios(sweeps: Mapping[str, Sweep], baselines: Sequence[Baseline], served: Optional[Mapping[str, str]] = None) -> List[Ratio]:
    """The ratios; ``served`` maps sam_encoder / sam_decoder to the baseline runtime of their served engine (default onnxruntime)."""
    served = dict(served or {})
    served.setdefault(ENSEMBLE_MODEL, served.get(ENCODER_MODEL, "onnxruntime"))
    ratios = []
    for model in MODELS:
        runtime = served.get(model, "onnxruntime")
        ratios.append(
            _divide(
                f"serving overhead, {model}",
                _triton_p50(sweeps, model),
                _baseline_p50(baselines, runtime, model),
                f"Triton p50 at c=1 / {RUNNER_NAMES[runtime]} p50",
                f"needs {model} at concurrency 1 and the {RUNNER_NAMES[runtime]} baseline",
                _unstable_note([_level(sweeps, model)]),
            )
        )
    for label in (DECODER_MODEL, SINGLE_CLICKS):
        ratios.append(_batching_gain(label, sweeps.get(label)))
    encoder, dec = _triton_p50(sweeps, ENCODER_MODEL), _triton_p50(sweeps, DECODER_MODEL)
    ratios.append(
        _divide(
            "ensemble vs encoder + decoder called separately",
            _triton_p50(sweeps, ENSEMBLE_MODEL),
            encoder + dec if encoder is not None and dec is not None else None,
            "sam p50 / (sam_encoder p50 + sam_decoder p50), Triton at c=1",
            "needs all three models at concurrency 1",
            _unstable_note([_level(sweeps, model) for model in MODELS]),
        )
    )
    for model in MODELS:
        ratios.append(
            _divide(
                f"ONNX Runtime speed-up over PyTorch, {model}",
                _baseline_p50(baselines, "pytorch", model),
                _baseline_p50(baselines, "onnxruntime", model),
                "PyTorch p50 / ONNX Runtime p50, in-process",
                "needs both in-process baselines",
            )
        )
    for runtime in ("openvino-fp32", "openvino-bf16"):
        precision = runtime.split("-")[1].upper()
        if any(b.runtime == runtime for b in baselines):
            ratios += [
                _divide(
                    f"OpenVINO {precision} speed-up over ONNX Runtime, {model}",
                    _baseline_p50(baselines, "onnxruntime", model),
                    _baseline_p50(baselines, runtime, model),
                    f"ONNX Runtime p50 / OpenVINO {precision} p50, in-process",
                    "needs both in-process baselines",
                )
                for model in (ENCODER_MODEL, DECODER_MODEL)
            ]
    return ratios
