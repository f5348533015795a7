"""OpenVINO settings of a repository: precision (FP32, BF16, or an INT8 encoder), performance hint, streams, pinning -> config parameters.

Two runtimes run OpenVINO on the same model.onnx: ``openvino`` (python-backend models, the embedded
server's) and ``openvino-backend`` (Triton's own openvino backend, NVIDIA's container). Both read
the same settings; they differ in the parameter names their config.pbtxt carries.

OpenVINO's CPU plugin runs BF16 by default wherever the CPU has AMX or AVX-512 BF16, so FP32 must
be asked for (``INFERENCE_PRECISION_HINT: f32``). Triton's openvino backend has no parameter for
that (only ``HINT_BF16: YES``): on such CPUs its "fp32" models run BF16 (see the README).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, TypedDict

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "int8")
#: What Triton's own openvino backend can be told (it reads the repository's model.onnx only).
BACKEND_PRECISIONS = ("fp32", "bf16")
DEFAULT_PRECISION = "fp32"
#: OpenVINO's names of our precisions (INFERENCE_PRECISION_HINT values). int8: the encoder is NNCF's
#: quantized model (build/export/quantize.py); what it leaves unquantized runs FP32.
INFERENCE_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
#: latency: one stream using every thread (best at concurrency 1); throughput: as many streams as
#: OpenVINO finds useful (one per core or pair of cores), each batch split across them.
PERFORMANCE_HINTS = ("latency", "throughput")

#: The decoder's engine in both OpenVINO runtimes: ONNX Runtime FP32, faster than OpenVINO FP32 on
#: the decoder in docs/studies/engine_rounds_vit_b.json; OpenVINO BF16 is faster still but leaves
#: the FP32 fidelity bar (docs/studies/openvino_fidelity.json).
DEFAULT_DECODER_ENGINE = "onnxruntime"


@dataclass(frozen=True, kw_only=True)
class OpenVinoOptions:
    """How OpenVINO compiles each model that runs on it.

    ``streams`` 0 leaves the number of streams to the performance hint; the threads per instance
    come from ``RepositoryOptions.intra_op_threads`` (0: every core), split evenly across streams.
    ``cpu_pinning`` None leaves OpenVINO's default (pinned on Linux).
    """

    precision: str = DEFAULT_PRECISION
    int8_scope: str = "stem_neck"  # with precision int8: the layers kept in floating point (quantize.SCOPES)
    performance_hint: str = "latency"
    streams: int = 0
    cpu_pinning: Optional[bool] = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"OpenVINO precision {self.precision!r}: expected one of {list(PRECISIONS)}")
        if self.performance_hint not in PERFORMANCE_HINTS:
            raise ValueError(f"performance hint {self.performance_hint!r}: expected one of {list(PERFORMANCE_HINTS)}")
        if self.streams < 0:
            raise ValueError(f"streams must be >= 0 (0: the performance hint's choice), got {self.streams}")

    def python_parameters(self, threads: int) -> Dict[str, str]:
        """config.pbtxt parameters of a python-backend model running OpenVINO (build/repository/templates/python_model.py)."""
        params = {
            "engine": "openvino",
            "INFERENCE_PRECISION_HINT": INFERENCE_PRECISION[self.precision],
            "PERFORMANCE_HINT": self.performance_hint.upper(),
        }
        if self.streams:
            params["NUM_STREAMS"] = str(self.streams)
        if threads:
            params["INFERENCE_NUM_THREADS"] = str(threads)
        if self.cpu_pinning is not None:
            params["ENABLE_CPU_PINNING"] = "YES" if self.cpu_pinning else "NO"
        return params

    def backend_parameters(self, threads: int) -> Dict[str, str]:
        """config.pbtxt parameters of Triton's openvino backend (its README's names; no pinning, no FP32 hint)."""
        if self.precision not in BACKEND_PRECISIONS:
            raise ValueError(f"OpenVINO precision {self.precision!r}: Triton's openvino backend runs {list(BACKEND_PRECISIONS)}")
        params = {"PERFORMANCE_HINT": self.performance_hint.upper()}
        if self.precision == "bf16":
            params["HINT_BF16"] = "YES"
        if self.streams:
            params["NUM_STREAMS"] = str(self.streams)
        if threads:
            params["INFERENCE_NUM_THREADS"] = str(threads)
        return params


def bf16_problem(*, capabilities: Sequence[str], device_name: str) -> Optional[str]:
    """Why BF16 cannot run natively on a CPU with these OpenVINO OPTIMIZATION_CAPABILITIES, or None if it can."""
    if "BF16" in capabilities:
        return None
    return (
        f"--precision bf16: this CPU ({device_name}) has neither AMX nor AVX-512 BF16 (OpenVINO's CPU"
        f" OPTIMIZATION_CAPABILITIES: {', '.join(capabilities)}), so OpenVINO would run FP32 instead;"
        " use --precision fp32, or build on the machine that serves (a Xeon of the 4th generation or later, or an AMD Zen 4)"
    )


class CpuInfo(TypedDict):
    """This machine's CPU as OpenVINO names it, and OpenVINO's OPTIMIZATION_CAPABILITIES of it."""

    name: str
    capabilities: List[str]


def cpu_capabilities() -> CpuInfo:
    """This machine's CPU as OpenVINO sees it: {'name': str, 'capabilities': [str]}."""
    try:
        import openvino as ov
    except ImportError as exc:
        raise RuntimeError("the openvino runtimes need OpenVINO: pip install 'sam-triton[serve]' (or pip install openvino)") from exc
    core = ov.Core()
    return {
        "name": core.get_property("CPU", "FULL_DEVICE_NAME"),
        "capabilities": list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")),
    }


def require_native_bf16() -> None:
    """Raise ValueError, saying why, where this machine's CPU cannot run BF16 natively."""
    cpu = cpu_capabilities()
    problem = bf16_problem(capabilities=cpu["capabilities"], device_name=cpu["name"])
    if problem:
        raise ValueError(problem)
    log.info("BF16 runs natively on this CPU (%s; OpenVINO capabilities %s)", cpu["name"], ", ".join(cpu["capabilities"]))
