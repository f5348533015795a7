"""What engine a served repository runs per model, from its parsed config.pbtxt files (``build.model_config.read_configs``).

The serving-overhead ratio divides Triton's latency by the in-process baseline of the same engine
and precision: ``onnxruntime``, ``openvino-fp32``, ``openvino-bf16`` or ``openvino-int8`` (``RUNNER_NAMES``'s keys).
"""

from __future__ import annotations

from typing import Dict

from sam_triton.client.contract import DECODER_MODEL, ENCODER_MODEL

#: Models whose engine we cannot tell (TensorRT plans, configs we did not write) compare with ONNX Runtime.
FALLBACK = "onnxruntime"


def served_engine(config) -> str:
    """The baseline runtime matching one parsed config.pbtxt: onnxruntime, openvino-fp32, openvino-bf16 or openvino-int8."""
    params = {key: value.string_value for key, value in config.parameters.items()}
    if config.backend == "python":
        if params.get("engine") == "openvino":
            if params.get("precision") == "int8":
                return "openvino-int8"
            return "openvino-bf16" if params.get("INFERENCE_PRECISION_HINT") == "bf16" else "openvino-fp32"
        return "onnxruntime"
    if config.backend == "openvino":
        return "openvino-bf16" if params.get("HINT_BF16", "").lower() == "yes" else "openvino-fp32"
    return FALLBACK


def served_engines(configs: Dict[str, object]) -> Dict[str, str]:
    """sam_encoder and sam_decoder -> the baseline runtime of their engine (``FALLBACK`` where a config is missing)."""
    return {model: served_engine(configs[model]) if model in configs else FALLBACK for model in (ENCODER_MODEL, DECODER_MODEL)}
