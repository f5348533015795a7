"""Will TensorRT's ONNX parser take our graphs? Every op, opset and dtype against its operator table.

The table (``data/tensorrt_onnx_operators.json``) is the parser's support matrix for the TensorRT
version the Dockerfile's NGC image ships; its source is named inside it. On top of the table this
checks the traps other SAM-on-TensorRT projects fell into:

- ops we design away (OneHot/Tile from ``repeat_interleave``, ScatterND, NonZero, ...);
- data-dependent output shapes: a shape-defining input (Reshape's shape, Resize's sizes, Expand's
  shape, ...) whose *values* come from a graph input, as the official decoder's resize to
  ``orig_im_size`` does (a shape tensor TensorRT can only take through ``set_shape_input``);
- int64 arithmetic on values computed from graph inputs (index arithmetic TensorRT casts);
- graph inputs and outputs of types TensorRT cannot bind.

``check_graph`` needs only the ``onnx`` package, so CI runs it on every export.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, FrozenSet, List, Mapping, Optional, Tuple, Union

from ..export.onnx_graph import GraphIndex

if TYPE_CHECKING:
    from onnx import ModelProto, NodeProto

OPERATOR_TABLE = Path(__file__).parent / "data" / "tensorrt_onnx_operators.json"

#: Ops the parser may accept but that our graphs must not contain, with why.
TRAP_OPS: Mapping[str, str] = {
    "OneHot": "SAM's repeat_interleave exports as OneHot -> Tile, and TensorRT then fails with 'an IIOneHotLayer cannot be used to compute a shape tensor'; export a broadcast (expand)",
    "ScatterND": "scatter writes make TensorRT fall back to slow plugins and break shape inference; compute the tensor with arithmetic instead",
    "ScatterElements": "scatter writes make TensorRT fall back to slow plugins; compute the tensor with arithmetic instead",
    "NonZero": "its output shape depends on the data, which TensorRT handles badly",
    "Unique": "its output shape depends on the data",
    "Loop": "control flow: the graph must be a straight line for TensorRT to optimize it",
    "If": "control flow: the graph must be a straight line for TensorRT to optimize it",
}

#: Inputs (by index) that define an output's shape; their values must not come from graph inputs.
SHAPE_INPUTS: Mapping[str, Tuple[int, ...]] = {
    "Reshape": (1,),
    "Expand": (1,),
    "Tile": (1,),
    "ConstantOfShape": (0,),
    "Resize": (1, 2, 3),
    "Upsample": (1,),
    "Slice": (1, 2, 3, 4),
    "Pad": (1, 3),
    "Range": (0, 1, 2),
    "TopK": (1,),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
    "Split": (1,),
    "OneHot": (1,),
    "CenterCropPad": (1,),
}

#: Ops whose output values do not depend on their inputs' values (only on shapes, or on nothing).
VALUE_BARRIERS = frozenset({"Shape", "Size", "Constant", "ConstantOfShape", "EyeLike", "RandomNormal", "RandomUniform"})

ARITHMETIC_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Mod", "Neg", "Abs", "Pow", "Sum", "Max", "Min"})


class UnsupportedGraphError(RuntimeError):
    """A graph holds something TensorRT's ONNX parser would reject or mishandle; the message lists it all."""


@dataclass(frozen=True)
class OperatorTable:
    """The parser's support matrix: op -> supported element types, and the ops it lists as unsupported."""

    tensorrt_version: str
    container: str
    source: str
    opset_range: Tuple[int, int]
    io_types: FrozenSet[str]
    supported: Mapping[str, FrozenSet[str]]
    restrictions: Mapping[str, str]
    unsupported: FrozenSet[str]


def load_operator_table(path: Path = OPERATOR_TABLE) -> OperatorTable:
    data = json.loads(Path(path).read_text())
    return OperatorTable(
        tensorrt_version=data["tensorrt_version"],
        container=data["container"],
        source=data["source"],
        opset_range=tuple(data["opset_range"]),
        io_types=frozenset(data["network_io_types"]),
        supported={op: frozenset(row["types"]) for op, row in data["supported"].items()},
        restrictions={op: row["restrictions"] for op, row in data["supported"].items() if "restrictions" in row},
        unsupported=frozenset(data["unsupported"]),
    )


@dataclass
class CoverageReport:
    """What one graph holds and every problem found; ``ok`` when there is none."""

    name: str
    tensorrt_version: str
    ops: Dict[str, int] = field(default_factory=dict)
    problems: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _checked_tensors(node: NodeProto) -> List[str]:
    """The tensors whose type is the op's main type T in the operator table."""
    if node.op_type in ("Constant", "ConstantOfShape"):
        return list(node.output[:1])
    if node.op_type in ("Cast", "CastLike"):
        return [node.input[0], node.output[0]]
    if node.op_type == "Where":
        return [node.input[1]]
    return [node.input[0]] if node.input and node.input[0] else list(node.output[:1])


def value_dependence(index: GraphIndex) -> Dict[str, bool]:
    """For every tensor: do its *values* depend on a graph input's values (not just its shape)?"""
    dependent = {name: True for name in index.graph_inputs}
    for node in index.nodes:  # ONNX nodes are stored in topological order
        depends = node.op_type not in VALUE_BARRIERS and any(dependent.get(i, False) for i in node.input if i)
        for out in node.output:
            dependent[out] = depends
    return dependent


def check_graph(source: Union[str, Path, ModelProto], *, name: str = "graph", table: Optional[OperatorTable] = None) -> CoverageReport:
    """Check one ONNX graph (a path or ModelProto) against the operator table and the traps."""
    table = table or load_operator_table()
    index = GraphIndex.build(source)
    report = CoverageReport(name=name, tensorrt_version=table.tensorrt_version)
    report.ops = dict(sorted(Counter(n.op_type for n in index.nodes).items()))
    problems = report.problems
    low, high = table.opset_range
    for domain, version in sorted(index.opsets.items()):
        if domain != "ai.onnx":
            problems.append(
                f"{name}: opset domain '{domain}' (version {version}): TensorRT {table.tensorrt_version} parses only the default ai.onnx domain"
            )
        elif not low <= version <= high:
            problems.append(f"{name}: opset {version}: TensorRT {table.tensorrt_version} supports opsets {low} to {high}")
    for kind, tensors in (("input", index.graph_inputs), ("output", index.graph_outputs)):
        for tensor in tensors:
            dtype = index.dtype.get(tensor)
            if dtype not in table.io_types:
                problems.append(f"{name}: graph {kind} '{tensor}' is {dtype}; TensorRT binds only {sorted(table.io_types)}")
    dependent = value_dependence(index)
    for node in index.nodes:
        label = f"{name}: node '{node.name or node.output[0]}' ({node.op_type})"
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{label}: custom domain '{node.domain}' needs a TensorRT plugin")
            continue
        if node.op_type in TRAP_OPS:
            problems.append(f"{label}: {TRAP_OPS[node.op_type]}")
        if node.op_type not in table.supported:
            why = "is listed as unsupported" if node.op_type in table.unsupported else "is not in the operator table"
            problems.append(f"{label}: {node.op_type} {why} for TensorRT {table.tensorrt_version}")
            continue
        if any(attr.type in (5, 10) for attr in node.attribute):  # GRAPH / GRAPHS: a subgraph
            problems.append(f"{label}: holds a subgraph, which this check does not follow")
        allowed = table.supported[node.op_type]
        for tensor in _checked_tensors(node):
            dtype = index.dtype.get(tensor)
            if dtype is not None and dtype not in allowed:
                problems.append(
                    f"{label}: tensor '{tensor}' is {dtype}; TensorRT {table.tensorrt_version} supports {node.op_type} on {sorted(allowed)}"
                )
        if node.op_type == "Einsum" and any(b"..." in attr.s for attr in node.attribute if attr.name == "equation"):
            problems.append(f"{label}: an ellipsis in the equation; {table.restrictions.get('Einsum', '')}")
        for position in SHAPE_INPUTS.get(node.op_type, ()):
            if position < len(node.input) and node.input[position] and dependent.get(node.input[position]):
                problems.append(
                    f"{label}: input {position} ('{node.input[position]}') sets an output shape from graph-input values: a data-dependent output shape"
                )
        if node.op_type in ARITHMETIC_OPS and index.dtype.get(node.output[0]) == "INT64" and dependent.get(node.output[0]):
            problems.append(
                f"{label}: int64 arithmetic on values computed from graph inputs (index arithmetic TensorRT casts); compute in float"
            )
    return report


def check_exported(onnx_dir: Path, graphs: Mapping[str, str], *, table: Optional[OperatorTable] = None) -> Dict[str, CoverageReport]:
    """Check every graph of an export (model name -> file name in ``onnx_dir``)."""
    table = table or load_operator_table()
    return {model: check_graph(Path(onnx_dir) / file, name=model, table=table) for model, file in graphs.items()}


def require_coverage(reports: Mapping[str, CoverageReport]) -> None:
    """Raise ``UnsupportedGraphError`` listing every problem of every report, if any."""
    problems = [p for report in reports.values() for p in report.problems]
    if problems:
        version = next(iter(reports.values())).tensorrt_version
        raise UnsupportedGraphError(
            f"the exported graphs hold what TensorRT {version}'s ONNX parser rejects or mishandles:\n  " + "\n  ".join(problems)
        )
