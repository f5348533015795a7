"""config.pbtxt for sam_encoder, sam_decoder and the sam ensemble, built as Triton's ModelConfig message.

Inputs, outputs and their dims come from ``sam_triton.client.contract``; batch and prompt limits
from ``Limits``; runtime fields (backend or platform, instance kind, parameters) from the runtime
registry ``RUNTIMES`` in ``assemble``. Nothing here is typed twice. Each config is a
``ModelConfig`` message (tritonclient's copy of Triton's model_config.proto) printed with
protobuf's ``text_format``, the format Triton parses, so a field name or an enum value the proto
does not know fails here rather than in the server. ``parse_config``/``read_configs`` read them
back the same way, for every module that asks what a repository serves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Sequence, Tuple

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from sam_triton.client import contract
from sam_triton.client.contract import Limits, TensorSpec

#: tritonclient's model_config_pb2.ModelConfig, for annotations (tritonclient ships no type information).
ModelConfig = Any


def _data_type(spec: TensorSpec) -> int:
    return pb.DataType.Value("TYPE_STRING" if spec.dtype == "BYTES" else f"TYPE_{spec.dtype}")  # config.pbtxt's name of the wire's BYTES


def _add_tensors(field: Any, specs: Sequence[TensorSpec], batch_in_dims: bool) -> None:
    """Append one ModelInput/ModelOutput per spec to a repeated field (``config.input`` or ``config.output``)."""
    for spec in specs:
        tensor = field.add(name=spec.name, data_type=_data_type(spec), dims=((-1,) if batch_in_dims else ()) + spec.dims)
        if getattr(spec, "optional", False):
            tensor.optional = True


def _set_parameters(config: ModelConfig, params: Dict[str, str]) -> None:
    for key, value in sorted(params.items()):
        config.parameters[key].string_value = value


def model_config(
    *,
    name: str,
    runtime_fields: Iterable[Tuple[str, str]],
    limits: Limits,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    instance_count: int,
    instance_kind: str,
    queue_delay_us: int,
    parameters: Dict[str, str],
    triton_batching: bool = True,
) -> ModelConfig:
    """One model's config: batching, instances, tensors and parameters.

    ``runtime_fields`` are (ModelConfig field, value) pairs such as ``("backend", "python")``.
    ``triton_batching`` False writes ``max_batch_size: 0`` and the batch dim into every tensor's
    dims (-1), with no dynamic batcher: the same tensors on the wire, for backends that cannot
    take a variable Triton batch (Triton's openvino backend fixes it at max_batch_size).
    """
    config = pb.ModelConfig(name=name, max_batch_size=limits.max_batch_size if triton_batching else 0)
    for field, value in runtime_fields:
        setattr(config, field, value)
    _add_tensors(config.input, inputs, not triton_batching)
    _add_tensors(config.output, outputs, not triton_batching)
    if triton_batching:
        config.dynamic_batching.SetInParent()
        config.dynamic_batching.max_queue_delay_microseconds = queue_delay_us
    config.instance_group.add(count=instance_count, kind=pb.ModelInstanceGroup.Kind.Value(instance_kind))
    _set_parameters(config, parameters)
    return config


def _add_step(config: ModelConfig, model: str, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> None:
    step = config.ensemble_scheduling.step.add(model_name=model, model_version=-1)
    for spec in inputs:
        step.input_map[spec.name] = spec.name
    for spec in outputs:
        step.output_map[spec.name] = spec.name


def ensemble_config(limits: Limits, triton_batching: bool = True) -> ModelConfig:
    """The ``sam`` ensemble: image and prompts -> sam_encoder -> sam_decoder -> masks and scores.

    ``triton_batching`` must match its models' (see ``model_config``).
    """
    config = pb.ModelConfig(
        name=contract.ENSEMBLE_MODEL, platform="ensemble", max_batch_size=limits.max_batch_size if triton_batching else 0
    )
    _add_tensors(config.input, contract.ENSEMBLE_INPUTS, not triton_batching)
    _add_tensors(config.output, contract.ENSEMBLE_OUTPUTS, not triton_batching)
    _add_step(config, contract.ENCODER_MODEL, contract.ENCODER_INPUTS, contract.ENCODER_OUTPUTS)
    _add_step(config, contract.DECODER_MODEL, contract.DECODER_INPUTS, contract.DECODER_OUTPUTS)
    return config


def session_config(parameters: Dict[str, str]) -> ModelConfig:
    """``sam_session``: the python-backend BLS model keeping image embeddings between calls.

    One CPU instance (count 1): the store lives in the model instance (a python stub process), so a
    second instance would hold a second store that the first one's sessions are unknown to. The
    encoder and decoder it calls keep their own instances and batching. Within the instance, opens
    and clicks run on lanes of worker threads (parameters ``open_workers``, ``click_workers``), so a
    click does not wait for an open. No batch dim: one request is one operation on one session.
    """
    config = pb.ModelConfig(name=contract.SESSION_MODEL, backend="python", max_batch_size=0)
    _add_tensors(config.input, contract.SESSION_INPUTS, False)
    _add_tensors(config.output, contract.SESSION_OUTPUTS, False)
    config.instance_group.add(count=1, kind=pb.ModelInstanceGroup.KIND_CPU)
    _set_parameters(config, parameters)
    return config


def limit_parameters(limits: Limits) -> Dict[str, str]:
    """The decoder's prompt limits, published in its config for clients and the python model."""
    return {"max_prompts": str(limits.max_prompts), "max_points": str(limits.max_points)}


def label_parameters() -> Dict[str, str]:
    """The point labels the python model accepts, value -> meaning as JSON (the contract's ``LABEL_MEANINGS``)."""
    return {"point_labels": json.dumps({str(value): meaning for value, meaning in contract.LABEL_MEANINGS.items()})}


def add_warmup(config: ModelConfig, specs: Sequence[TensorSpec], opt_shapes: Mapping[str, Sequence[int]]) -> None:
    """``model_warmup``: one zero-filled request at the optimized shape (batch dim first in ``opt_shapes``).

    Triton runs it before the model is READY, so the first user request is not the one that pays
    for TensorRT's lazy initialization (and, with CUDA graphs, their capture).
    """
    batch = {next(iter(opt_shapes[s.name])) for s in specs}
    if len(batch) != 1:
        raise ValueError(f"warmup shapes disagree on the batch size: {opt_shapes}")
    warmup = config.model_warmup.add(name="opt_shape", batch_size=batch.pop())
    for spec in specs:
        warmup.inputs[spec.name].CopyFrom(pb.ModelWarmup.Input(data_type=_data_type(spec), dims=opt_shapes[spec.name][1:], zero_data=True))


def add_cuda_graphs(config: ModelConfig, specs: Sequence[TensorSpec], opt_shapes: Mapping[str, Sequence[int]], max_batch_size: int) -> None:
    """``optimization { cuda { graphs } }`` with one captured graph per batch size at the optimized shape.

    TensorRT's backend replays a graph only for the exact shapes it was captured with, so each
    batch size 1..max_batch_size gets a ``graph_spec`` at the common request shape (one click or
    one box); other shapes run without a graph.
    """
    cuda = config.optimization.cuda
    cuda.graphs = True
    for batch in range(1, max_batch_size + 1):
        graph = cuda.graph_spec.add(batch_size=batch)
        for spec in specs:
            graph.input[spec.name].dim.extend(opt_shapes[spec.name][1:])


def config_text(config: ModelConfig) -> str:
    """The config.pbtxt text of a ModelConfig message."""
    return text_format.MessageToString(config, use_short_repeated_primitives=True)


def parse_config(text: str) -> ModelConfig:
    """config.pbtxt text -> Triton's ModelConfig message (tritonclient's copy of it); ValueError if it does not parse."""
    try:
        return text_format.Parse(text, pb.ModelConfig())
    except text_format.ParseError as exc:
        raise ValueError(f"config.pbtxt does not parse: {exc}") from exc


def read_configs(repository: Path) -> Dict[str, ModelConfig]:
    """Model name -> its parsed config.pbtxt, for every model of a repository, in name order."""
    return {path.parent.name: parse_config(path.read_text()) for path in sorted(Path(repository).glob("*/config.pbtxt"))}


def runtime_of(config: ModelConfig) -> str:
    """What runs a model: its backend (python, openvino, ...) or, without one, its platform (ensemble, tensorrt_plan, ...)."""
    return config.backend or config.platform
