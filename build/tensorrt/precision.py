"""Which layers a mixed-precision engine keeps in FP32: named groups, found by pattern on the ONNX graph.

``--precision fp32`` builds FP32 engines; ``fp16`` lets TensorRT run every layer in FP16 where it
is faster; ``mixed`` is FP16 with the layers of the chosen groups pinned to FP32 (TensorRT layer
precision and output types, with ``OBEY_PRECISION_CONSTRAINTS``). The groups are the usual FP16
suspects in ViT-SAM:

- ``layernorm``: ONNX ``LayerNormalization`` ops (the ViT blocks, the decoder's transformer);
- ``layernorm2d``: SAM's hand-written ``LayerNorm2d`` (encoder neck, decoder upscaling, mask
  downscaling). It is not an ONNX op but ReduceMean -> Sub -> Pow(2) -> ReduceMean -> Add(eps) ->
  Sqrt -> Div (-> Mul(weight) -> Add(bias)), matched here by structure;
- ``softmax``: every ``Softmax``;
- ``attention_logits``: the MatMul (and relative-position Einsum) producing each softmax's
  logits, and the scale/bias ops between them and the softmax; ``attention`` adds the softmax;
- ``prompt_pe``: the prompt encoder's random-Fourier point encoding (decoder only);
- ``all``: every layer (an FP32 model inside a mixed build, e.g. an FP32 decoder).

Selection works on the ONNX graph with the ``onnx`` package only, so it is tested on our real
exports without TensorRT; the engine builder maps node names to TensorRT layers through the
``[ONNX Layer: name]`` metadata the parser attaches to each layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from sam_triton.client import contract

from ..export.onnx_graph import GraphIndex

if TYPE_CHECKING:
    from onnx import ModelProto, NodeProto

PRECISIONS = ("fp32", "fp16", "mixed")
DEFAULT_PRECISION = "fp16"

#: The FP32-kept groups that ``--precision mixed`` uses when ``--fp32-groups`` is not given, per model.
#:
#: Chosen from docs/studies/fp16_study_h100.md (``python -m sam_triton.perf.studies.fp16_study``: PyTorch
#: CUDA half on an H100 as the stand-in for TensorRT FP16, seeded random ViT-B/L/H weights, the
#: three test photos, four prompt kinds; TensorRT itself could not be run):
#:
#: all-FP16 already keeps masks close; an FP32 decoder behind the FP16 encoder is the one change
#: that clearly helps, at a measured cost on the decoder; LayerNorm in FP32 changes little and costs
#: little. Random weights keep LayerNorm inputs far from FP16's overflow (LayerNorm squares its
#: input), so the study cannot show the overflow that trained ViT encoders are reported to hit in
#: FP16: LayerNorm stays in FP32 in the encoder for that reason. The figures are in the study;
#: ``--fp32-groups`` overrides per build.
DEFAULT_FP32_GROUPS: Mapping[str, Tuple[str, ...]] = {
    contract.ENCODER_MODEL: ("layernorm", "layernorm2d"),
    contract.DECODER_MODEL: ("all",),
}

#: Ops that may sit between an attention-logit MatMul and its Softmax (scale, relative-position
#: bias, reshapes). Only their data input (index 0) is followed for shape ops.
_LOGIT_ELEMENTWISE = frozenset({"Add", "Sub", "Mul", "Div", "Cast"})
_LOGIT_RESHAPES = frozenset({"Reshape", "Unsqueeze", "Squeeze", "Transpose", "Flatten"})
_LOGIT_PRODUCERS = frozenset({"MatMul", "Einsum"})


def _name(node: NodeProto) -> str:
    return node.name or node.output[0]


def _ops(index: GraphIndex, op_type: str) -> List[str]:
    return [_name(n) for n in index.nodes if n.op_type == op_type]


def _is_constant(index: GraphIndex, tensor: str, value: Optional[float] = None) -> bool:
    if not index.is_static(tensor):
        return False
    if value is None:
        return True
    array = index.constant_value(tensor)
    return array is not None and array.size == 1 and float(array.reshape(-1)[0]) == value


def _other_input(node: NodeProto, tensor: str) -> str:
    others = [i for i in node.input if i != tensor]
    return others[0] if len(others) == 1 else ""


def _layernorm2d(index: GraphIndex) -> List[str]:
    """Every ReduceMean -> Sub -> Pow(2) -> ReduceMean -> Add(eps) -> Sqrt -> Div [-> Mul -> Add] chain."""
    selected: List[str] = []
    for mean in (n for n in index.nodes if n.op_type == "ReduceMean"):
        x = mean.input[0]
        sub = next(
            (n for n in index.consumers.get(mean.output[0], []) if n.op_type == "Sub" and list(n.input) == [x, mean.output[0]]), None
        )
        if sub is None:
            continue
        pow_ = next(
            (n for n in index.consumers.get(sub.output[0], []) if n.op_type == "Pow" and _is_constant(index, n.input[1], 2.0)), None
        )
        var = None if pow_ is None else index.single_consumer(pow_.output[0], "ReduceMean")
        add = None if var is None else index.single_consumer(var.output[0], "Add")
        if pow_ is None or var is None or add is None or not _is_constant(index, _other_input(add, var.output[0])):
            continue
        sqrt = index.single_consumer(add.output[0], "Sqrt")
        div = None if sqrt is None else index.single_consumer(sqrt.output[0], "Div")
        if sqrt is None or div is None or list(div.input) != [sub.output[0], sqrt.output[0]]:
            continue
        chain = [mean, sub, pow_, var, add, sqrt, div]
        scale = index.single_consumer(div.output[0], "Mul")
        if scale is not None and _is_constant(index, _other_input(scale, div.output[0])):
            shift = index.single_consumer(scale.output[0], "Add")
            chain.append(scale)
            if shift is not None and _is_constant(index, _other_input(shift, scale.output[0])):
                chain.append(shift)
        selected.extend(_name(n) for n in chain)
    return selected


def _attention_logits(index: GraphIndex) -> List[str]:
    """For each Softmax, walk back through scale/bias/reshape ops to the MatMuls/Einsums feeding it."""
    selected: List[str] = []
    for softmax in (n for n in index.nodes if n.op_type == "Softmax"):
        found: List[str] = []
        reached_producer = False
        stack, seen = [softmax.input[0]], set()
        while stack:
            node = index.producer.get(stack.pop())
            if node is None or _name(node) in seen:
                continue
            seen.add(_name(node))
            if node.op_type in _LOGIT_PRODUCERS:
                found.append(_name(node))
                reached_producer = True
            elif node.op_type in _LOGIT_ELEMENTWISE:
                found.append(_name(node))
                stack.extend(i for i in node.input if i and not index.is_static(i))
            elif node.op_type in _LOGIT_RESHAPES:
                found.append(_name(node))
                stack.append(node.input[0])
        if reached_producer:  # a softmax not fed by a MatMul/Einsum is no attention: select nothing for it
            selected.extend(found)
    return selected


def _prompt_pe(index: GraphIndex) -> List[str]:
    """The prompt encoder's random-Fourier point encoding: Sin/Cos, back through the scale ops to the
    MatMul with the (static) Gaussian matrix, and the Concat joining them."""
    selected: List[str] = []
    for trig in (n for n in index.nodes if n.op_type in ("Sin", "Cos")):
        chain, tensor = [trig], trig.input[0]
        while tensor in index.producer:
            node = index.producer[tensor]
            static = [i for i in node.input if index.is_static(i)]
            if node.op_type in _LOGIT_ELEMENTWISE - {"Cast"} and len(node.input) == 2 and len(static) == 1:
                tensor = next(i for i in node.input if not index.is_static(i))
            elif node.op_type == "MatMul" and index.is_static(node.input[1]):
                tensor = node.input[0]
            else:
                break
            chain.append(node)
        if any(n.op_type == "MatMul" for n in chain):  # a Fourier feature, not some other sine
            chain += [n for n in index.consumers.get(trig.output[0], []) if n.op_type == "Concat"]
            selected.extend(_name(n) for n in chain)
    return selected


@dataclass(frozen=True)
class LayerGroup:
    """A named set of layers that ``--precision mixed`` can keep in FP32."""

    name: str
    doc: str
    select: Callable[[GraphIndex], List[str]]


FP32_GROUPS: Mapping[str, LayerGroup] = {
    group.name: group
    for group in (
        LayerGroup("layernorm", "ONNX LayerNormalization ops", lambda index: _ops(index, "LayerNormalization")),
        LayerGroup("layernorm2d", "SAM's LayerNorm2d, matched as ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div(/Mul/Add)", _layernorm2d),
        LayerGroup("softmax", "Softmax ops", lambda index: _ops(index, "Softmax")),
        LayerGroup("attention_logits", "the MatMuls/Einsums and scale/bias ops producing each softmax's logits", _attention_logits),
        LayerGroup("attention", "attention_logits and softmax together", lambda index: _attention_logits(index) + _ops(index, "Softmax")),
        LayerGroup("prompt_pe", "the prompt encoder's random-Fourier point encoding (Gaussian MatMul, Sin, Cos)", _prompt_pe),
        LayerGroup(
            "all",
            "every layer: an FP32 engine of this model inside a mixed build",
            lambda index: [_name(n) for n in index.nodes if n.op_type != "Constant"],
        ),
    )
}


def parse_groups(text: str) -> Tuple[str, ...]:
    """``--fp32-groups`` text ("layernorm,softmax" or "none") -> group names; unknown names raise."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if names == ("none",):
        return ()
    unknown = [n for n in names if n not in FP32_GROUPS]
    if unknown or not names:
        raise ValueError(f"--fp32-groups {text!r}: expected a comma-separated list of {sorted(FP32_GROUPS)}, or 'none'")
    return names


@dataclass(frozen=True, kw_only=True)
class PrecisionChoice:
    """The engine precision and, for ``mixed``, the FP32-kept groups (None: ``DEFAULT_FP32_GROUPS``)."""

    precision: str = DEFAULT_PRECISION
    fp32_groups: Optional[Tuple[str, ...]] = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: expected one of {list(PRECISIONS)}")
        if self.fp32_groups is not None:
            if self.precision != "mixed":
                raise ValueError(f"--fp32-groups applies to --precision mixed only (got --precision {self.precision})")
            unknown = [g for g in self.fp32_groups if g not in FP32_GROUPS]
            if unknown:
                raise ValueError(f"fp32 groups {unknown}: expected names from {sorted(FP32_GROUPS)}")

    @property
    def fp16(self) -> bool:
        return self.precision != "fp32"

    def groups_for(self, model: str) -> Tuple[str, ...]:
        if self.precision != "mixed":
            return ()
        return self.fp32_groups if self.fp32_groups is not None else DEFAULT_FP32_GROUPS[model]


def select_fp32_nodes(source: Union[str, Path, ModelProto, GraphIndex], groups: Sequence[str]) -> Dict[str, List[str]]:
    """Group name -> the ONNX node names it selects in ``source`` (a path or ModelProto), in graph order."""
    index = source if isinstance(source, GraphIndex) else GraphIndex.build(source)
    position = {_name(n): i for i, n in enumerate(index.nodes)}
    return {group: sorted(set(FP32_GROUPS[group].select(index)), key=position.__getitem__) for group in groups}
