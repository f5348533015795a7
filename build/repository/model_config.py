"""config.pbtxt text for sam_encoder, sam_decoder and the sam ensemble, from the contract.

Inputs, outputs and their dims come from ``sam_triton.client.contract``; batch and prompt limits
from ``Limits``; runtime lines (backend or platform, instance kind, parameters) from the runtime
registry ``RUNTIMES`` in ``assemble``. Nothing here is typed twice. ``parse_config``/``read_configs`` read
them back the way Triton does (protobuf text format), for every module that asks what a
repository serves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Sequence

from sam_triton.client import contract
from sam_triton.client.contract import Limits, TensorSpec


def _tensor(spec: TensorSpec, batch_in_dims: bool = False) -> str:
    dims = ", ".join(str(d) for d in ((-1,) if batch_in_dims else ()) + spec.dims)
    return f'  {{\n    name: "{spec.name}"\n    data_type: TYPE_{spec.dtype}\n    dims: [ {dims} ]\n  }}'


def _tensors(kind: str, specs: Sequence[TensorSpec], batch_in_dims: bool = False) -> str:
    return f"{kind} [\n" + ",\n".join(_tensor(s, batch_in_dims) for s in specs) + "\n]"


def _parameters(params: Dict[str, str]) -> List[str]:
    return [f'parameters {{\n  key: "{key}"\n  value: {{ string_value: "{value}" }}\n}}' for key, value in sorted(params.items())]


def model_config(
    *,
    name: str,
    runtime_lines: Iterable[str],
    limits: Limits,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    instance_count: int,
    instance_kind: str,
    queue_delay_us: int,
    parameters: Dict[str, str],
    extra_blocks: Sequence[str] = (),
    triton_batching: bool = True,
) -> str:
    """One model's config.pbtxt: batching, instances, tensors and parameters.

    ``triton_batching`` False writes ``max_batch_size: 0`` and the batch dim into every tensor's
    dims (-1), with no dynamic batcher: the same tensors on the wire, for backends that cannot
    take a variable Triton batch (Triton's openvino backend fixes it at max_batch_size).
    """
    blocks = [f'name: "{name}"', *runtime_lines, f"max_batch_size: {limits.max_batch_size if triton_batching else 0}"]
    blocks.append(_tensors("input", inputs, not triton_batching))
    blocks.append(_tensors("output", outputs, not triton_batching))
    if triton_batching:
        blocks.append(f"dynamic_batching {{\n  max_queue_delay_microseconds: {queue_delay_us}\n}}")
    blocks.append(f"instance_group [\n  {{\n    count: {instance_count}\n    kind: {instance_kind}\n  }}\n]")
    blocks.extend(_parameters(parameters))
    blocks.extend(extra_blocks)
    return "\n".join(blocks) + "\n"


def _step(model: str, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> str:
    maps = [f'      input_map {{ key: "{s.name}" value: "{s.name}" }}' for s in inputs]
    maps += [f'      output_map {{ key: "{s.name}" value: "{s.name}" }}' for s in outputs]
    return "    {\n" + f'      model_name: "{model}"\n      model_version: -1\n' + "\n".join(maps) + "\n    }"


def ensemble_config(limits: Limits, triton_batching: bool = True) -> str:
    """The ``sam`` ensemble: image and prompts -> sam_encoder -> sam_decoder -> masks and scores.

    ``triton_batching`` must match its models' (see ``model_config``).
    """
    steps = [
        _step(contract.ENCODER_MODEL, contract.ENCODER_INPUTS, contract.ENCODER_OUTPUTS),
        _step(contract.DECODER_MODEL, contract.DECODER_INPUTS, contract.DECODER_OUTPUTS),
    ]
    blocks = [
        f'name: "{contract.ENSEMBLE_MODEL}"',
        'platform: "ensemble"',
        f"max_batch_size: {limits.max_batch_size if triton_batching else 0}",
        _tensors("input", contract.ENSEMBLE_INPUTS, not triton_batching),
        _tensors("output", contract.ENSEMBLE_OUTPUTS, not triton_batching),
        "ensemble_scheduling {\n  step [\n" + ",\n".join(steps) + "\n  ]\n}",
    ]
    return "\n".join(blocks) + "\n"


def limit_parameters(limits: Limits) -> Dict[str, str]:
    """The decoder's prompt limits, published in its config for clients and the python model."""
    return {"max_prompts": str(limits.max_prompts), "max_points": str(limits.max_points)}


def _dims(shape: Sequence[int]) -> str:
    return ", ".join(str(d) for d in shape)


def warmup_block(specs: Sequence[TensorSpec], opt_shapes: Mapping[str, Sequence[int]]) -> str:
    """``model_warmup``: one zero-filled request at the optimized shape (batch dim first in ``opt_shapes``).

    Triton runs it before the model is READY, so the first user request is not the one that pays
    for TensorRT's lazy initialization (and, with CUDA graphs, their capture).
    """
    batch = {next(iter(opt_shapes[s.name])) for s in specs}
    if len(batch) != 1:
        raise ValueError(f"warmup shapes disagree on the batch size: {opt_shapes}")
    inputs = [
        f'    inputs {{\n      key: "{s.name}"\n      value {{ data_type: TYPE_{s.dtype} dims: [ {_dims(opt_shapes[s.name][1:])} ] zero_data: true }}\n    }}'
        for s in specs
    ]
    return "model_warmup [\n  {\n" + f'    name: "opt_shape"\n    batch_size: {batch.pop()}\n' + "\n".join(inputs) + "\n  }\n]"


def cuda_graphs_block(specs: Sequence[TensorSpec], opt_shapes: Mapping[str, Sequence[int]], max_batch_size: int) -> str:
    """``optimization { cuda { graphs } }`` with one captured graph per batch size at the optimized shape.

    TensorRT's backend replays a graph only for the exact shapes it was captured with, so each
    batch size 1..max_batch_size gets a ``graph_spec`` at the common request shape (one click or
    one box); other shapes run without a graph.
    """
    specs_text = []
    for batch in range(1, max_batch_size + 1):
        inputs = "\n".join(f'        input {{ key: "{s.name}" value {{ dim: [ {_dims(opt_shapes[s.name][1:])} ] }} }}' for s in specs)
        specs_text.append(f"      {{\n        batch_size: {batch}\n{inputs}\n      }}")
    return "optimization {\n  cuda {\n    graphs: true\n    graph_spec [\n" + ",\n".join(specs_text) + "\n    ]\n  }\n}"


def parse_config(text: str) -> Any:  # a ModelConfig message: tritonclient ships no type information
    """config.pbtxt text -> Triton's ModelConfig message (tritonclient's copy of it); ValueError if it does not parse."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise ValueError(f"config.pbtxt does not parse: {exc}") from exc


def read_configs(repository: Path) -> Dict[str, Any]:
    """Model name -> its parsed config.pbtxt, for every model of a repository, in name order."""
    return {path.parent.name: parse_config(path.read_text()) for path in sorted(Path(repository).glob("*/config.pbtxt"))}


def runtime_of(config) -> str:
    """What runs a model: its backend (python, openvino, ...) or, without one, its platform (ensemble, tensorrt_plan, ...)."""
    return config.backend or config.platform
