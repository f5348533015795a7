"""Building Triton inference calls and reading their results: shared by the sync and async clients.

tritonclient's ``InferInput`` and ``InferRequestedOutput`` are the same classes in ``grpc`` and
``grpc.aio``, so one ``infer_rpc`` serves both. An input or output may be ``Placed`` in a
registered shared-memory region instead of travelling in the gRPC message.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.utils import np_to_triton_dtype

from ..contract import DEFAULT_LIMITS, Limits
from .ops import Rpc
from .regions import Placed


def _describe_array(name: str, array: np.ndarray) -> str:
    return f"{name} {np_to_triton_dtype(array.dtype)}{list(array.shape)}"


def _describe_placed(name: str, placed: Placed) -> str:
    return f"{name} {np_to_triton_dtype(np.dtype(placed.dtype))}{list(placed.shape)} in {placed.region.kind} shared memory '{placed.region.name}'"


def infer_rpc(
    model: str,
    arrays: Mapping[str, np.ndarray],
    output_names: Sequence[str],
    *,
    timeout_s: float,
    shm_inputs: Optional[Mapping[str, Placed]] = None,
    shm_outputs: Optional[Mapping[str, Placed]] = None,
) -> Rpc:
    """An ``infer`` call: ``arrays`` travel in the message, ``shm_inputs`` are read from regions,
    ``shm_outputs`` are written into regions (the rest come back in the reply)."""
    shm_inputs, shm_outputs = shm_inputs or {}, shm_outputs or {}
    inputs = []
    described = []
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        item = InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        item.set_data_from_numpy(array)
        inputs.append(item)
        described.append(_describe_array(name, array))
    for name, placed in shm_inputs.items():
        item = InferInput(name, list(placed.shape), np_to_triton_dtype(np.dtype(placed.dtype)))
        item.set_shared_memory(placed.region.name, placed.byte_size, offset=placed.offset)
        inputs.append(item)
        described.append(_describe_placed(name, placed))
    outputs = []
    for name in output_names:
        item = InferRequestedOutput(name)
        if name in shm_outputs:
            placed = shm_outputs[name]
            item.set_shared_memory(placed.region.name, placed.byte_size, offset=placed.offset)
        outputs.append(item)
    request = f"{model}({', '.join(described)})"
    return Rpc("infer", dict(model_name=model, inputs=inputs, outputs=outputs, client_timeout=timeout_s), model=model, request=request)


def read_outputs(result: Any, output_names: Sequence[str], shm_outputs: Optional[Mapping[str, Placed]] = None) -> Dict[str, np.ndarray]:
    """Each output as a numpy array (a copy when it was written into shared memory)."""
    shm_outputs = shm_outputs or {}
    arrays = {}
    for name in output_names:
        if name in shm_outputs:
            meta = result.get_output(name)
            placed = shm_outputs[name]
            arrays[name] = placed.region.read(placed.dtype, tuple(int(d) for d in meta.shape), placed.offset)
        else:
            arrays[name] = result.as_numpy(name)
    return arrays


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
