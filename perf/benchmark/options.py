"""Everything one benchmark run needs, in one frozen options object built from the command line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from sam_triton.build.export.pipeline import ModelChoice

from .analyzer import Measurement

FULL_CONCURRENCY = (1, 2, 4, 8, 16)
#: The full run: count windows of 10 requests per concurrent client for the decoder, 5 for the
#: encoder and the ensemble, which are slower by an order of magnitude or more; perf_analyzer's
#: default stability (10%, at most 10 windows).
FULL_DECODER_MEASUREMENT = Measurement(rounds=10)
FULL_ENCODER_MEASUREMENT = Measurement(rounds=5)
FULL_BASELINE_REQUESTS = 20

#: --quick: two levels per model (decoder 1 and 8, for the batching ratio), one fixed-size
#: measurement per level, so that CI finishes in about a minute on two cores.
QUICK_DECODER_CONCURRENCY = (1, 8)
QUICK_ENCODER_CONCURRENCY = (1, 2)
QUICK_DECODER_MEASUREMENT = Measurement(rounds=4, stabilize=False)
QUICK_ENCODER_MEASUREMENT = Measurement(rounds=3, stabilize=False)
QUICK_BASELINE_REQUESTS = 3


@dataclass(frozen=True, kw_only=True)
class PerfOptions:
    """One benchmark run.

    ``runtime`` set: (re)write ``repository`` for that runtime from ``model`` before serving it;
    ``None``: serve ``repository`` as it is. ``url`` set: benchmark that running server (gRPC
    ``host:port``) instead of starting one. ``encoder_*`` apply to sam_encoder and to the sam
    ensemble (both run the image encoder), ``decoder_*`` to sam_decoder.
    """

    model: ModelChoice
    repository: Path
    cache_dir: Path
    results_dir: Path
    runtime: Optional[str] = None
    precision: str = "fp32"  # the openvino runtimes' precision (fp32, bf16, int8) when ``runtime`` writes the repository
    url: Optional[str] = None
    tritonserver: Optional[Path] = None
    check_image: Optional[Path] = None
    check_export: bool = True
    photos: Tuple[Path, ...] = ()
    decoder_concurrency: Tuple[int, ...] = FULL_CONCURRENCY
    encoder_concurrency: Tuple[int, ...] = FULL_CONCURRENCY
    decoder_measurement: Measurement = FULL_DECODER_MEASUREMENT
    encoder_measurement: Measurement = FULL_ENCODER_MEASUREMENT
    baseline_requests: int = FULL_BASELINE_REQUESTS
    quick: bool = False
    tools_dir: Optional[Path] = None
    run_timeout_s: float = 1800.0
    command_line: str = ""

    def __post_init__(self) -> None:
        for name in ("decoder_concurrency", "encoder_concurrency"):
            levels = getattr(self, name)
            if not levels or any(c < 1 for c in levels):
                raise ValueError(f"{name.replace('_', ' ')}: expected concurrency levels >= 1, got {list(levels)}")
        if self.precision != "fp32" and self.runtime not in ("openvino", "openvino-backend"):
            raise ValueError(f"--precision {self.precision}: applies with --runtime openvino or openvino-backend (got {self.runtime})")
        if self.baseline_requests < 1:
            raise ValueError(f"baseline requests must be >= 1, got {self.baseline_requests}")
