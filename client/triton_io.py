"""The parts of a Triton call that the sync and async clients share: inputs, outputs, limits, errors."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Dict, Iterator, Mapping, Sequence

import numpy as np
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from .contract import DEFAULT_LIMITS, Limits
from .errors import from_triton

# Grown gRPC message limits: one encoder request carries a 3 MB image, a decoder reply with many
# prompts carries P x 4 x 256 x 256 float32 logits (1 MB per prompt).
GRPC_CHANNEL_ARGS = [
    ("grpc.max_send_message_length", 512 * 1024 * 1024),
    ("grpc.max_receive_message_length", 512 * 1024 * 1024),
]


def make_inputs(infer_input_cls: Any, arrays: Mapping[str, np.ndarray]) -> list:
    """tritonclient InferInput objects (of the grpc or grpc.aio module) holding ``arrays``."""
    inputs = []
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        item = infer_input_cls(name, list(array.shape), np_to_triton_dtype(array.dtype))
        item.set_data_from_numpy(array)
        inputs.append(item)
    return inputs


def make_outputs(requested_output_cls: Any, names: Sequence[str]) -> list:
    return [requested_output_cls(name) for name in names]


def read_outputs(result: Any, names: Sequence[str]) -> Dict[str, np.ndarray]:
    return {name: result.as_numpy(name) for name in names}


@contextmanager
def translated_errors(model: str) -> Iterator[None]:
    """Re-raise tritonclient errors as this library's, naming the model."""
    try:
        yield
    except InferenceServerException as exc:
        raise from_triton(exc, model=model) from exc


def limits_from_config(config: Mapping[str, Any]) -> Limits:
    """Read the decoder's prompt limits from its config.pbtxt ``parameters`` (written by ``build``)."""
    params = config.get("parameters", {}) or {}

    def value(key: str, default: int) -> int:
        entry = params.get(key)
        return int(entry["string_value"]) if entry and "string_value" in entry else default

    return Limits(
        max_batch_size=int(config.get("max_batch_size", DEFAULT_LIMITS.max_batch_size)) or DEFAULT_LIMITS.max_batch_size,
        max_prompts=value("max_prompts", DEFAULT_LIMITS.max_prompts),
        max_points=value("max_points", DEFAULT_LIMITS.max_points),
    )
