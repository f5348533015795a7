"""What engine a served repository runs per model, read from its config.pbtxt files.

The serving-overhead ratio divides Triton's latency by the in-process baseline of the same engine
and precision: ``onnxruntime``, ``openvino-fp32`` or ``openvino-bf16`` (``RUNNER_NAMES``'s keys).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict

from sam_triton.client.contract import DECODER_MODEL, ENCODER_MODEL

_RUNTIME = re.compile(r'^(backend|platform): "([^"]+)"', re.M)
_PARAMETER = re.compile(r'key: "([^"]+)"\s*value: \{ string_value: "([^"]*)" \}')
#: Models whose engine we cannot tell (TensorRT plans, configs we did not write) compare with ONNX Runtime.
FALLBACK = "onnxruntime"


def served_engine(config_text: str) -> str:
    """The baseline runtime matching one config.pbtxt: onnxruntime, openvino-fp32 or openvino-bf16."""
    runtime = _RUNTIME.search(config_text)
    params = dict(_PARAMETER.findall(config_text))
    kind = (runtime.group(1), runtime.group(2)) if runtime else ("", "")
    if kind == ("backend", "python"):
        if params.get("engine") == "openvino":
            return "openvino-bf16" if params.get("INFERENCE_PRECISION_HINT") == "bf16" else "openvino-fp32"
        return "onnxruntime"
    if kind == ("backend", "openvino"):
        return "openvino-bf16" if params.get("HINT_BF16", "").lower() == "yes" else "openvino-fp32"
    return FALLBACK


def served_engines(repository: Path) -> Dict[str, str]:
    """sam_encoder and sam_decoder -> the baseline runtime of their engine (``FALLBACK`` where unreadable)."""
    engines = {}
    for model in (ENCODER_MODEL, DECODER_MODEL):
        try:
            engines[model] = served_engine((Path(repository) / model / "config.pbtxt").read_text())
        except OSError:
            engines[model] = FALLBACK
    return engines
