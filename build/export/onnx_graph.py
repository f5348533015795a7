"""A read-only index over an ONNX graph: who produces and consumes each tensor, dtypes, constants.

The op-coverage check (``onnx_coverage``) and the FP32-layer selection (``precision``) both walk
our exported graphs; this is the one place that builds the maps they walk. Only the top-level
graph is indexed (our graphs have no If/Loop subgraphs; the coverage check reports any it finds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Set, Union

import numpy as np

if TYPE_CHECKING:  # onnx is imported where a graph is read (the build extra), its types only for the checker
    from onnx import ModelProto, NodeProto

#: ONNX element types by the short names TensorRT's operator table uses.
DTYPE_NAMES = {
    1: "FP32",
    2: "UINT8",
    3: "INT8",
    4: "UINT16",
    5: "INT16",
    6: "INT32",
    7: "INT64",
    8: "STRING",
    9: "BOOL",
    10: "FP16",
    11: "DOUBLE",
    12: "UINT32",
    13: "UINT64",
    16: "BF16",
    17: "FP8",
    18: "FP8",
    19: "FP8",
    20: "FP8",
    21: "UINT4",
    22: "INT4",
    23: "FP4",
}


def load_graph(source: Union[str, Path, ModelProto]) -> ModelProto:
    """An ``onnx.ModelProto`` from a path (external data is not loaded: only structure is needed)."""
    import onnx

    if isinstance(source, (str, Path)):
        return onnx.load(str(source), load_external_data=False)
    return source


@dataclass
class GraphIndex:
    """Maps over one ONNX model's main graph.

    ``producer[t]`` is the node writing tensor ``t``; ``consumers[t]`` the nodes reading it;
    ``dtype[t]`` its element type name ("FP32", "INT64", ...) where known after shape inference;
    ``constants[t]`` the value of initializers and Constant-node outputs (small ones only).
    """

    model: ModelProto
    producer: Dict[str, NodeProto] = field(default_factory=dict)
    consumers: Dict[str, List[NodeProto]] = field(default_factory=dict)
    dtype: Dict[str, str] = field(default_factory=dict)
    constants: Dict[str, np.ndarray] = field(default_factory=dict)
    graph_inputs: List[str] = field(default_factory=list)
    graph_outputs: List[str] = field(default_factory=list)
    initializers: Set[str] = field(default_factory=set)
    nodes: List[NodeProto] = field(default_factory=list)
    opsets: Dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(cls, source: Union[str, Path, ModelProto]) -> "GraphIndex":
        from onnx import numpy_helper, shape_inference

        model = load_graph(source)
        try:
            inferred = shape_inference.infer_shapes(model)
        except Exception:
            inferred = model
        graph = inferred.graph
        index = cls(model=model)
        initializer_names = {init.name for init in graph.initializer}
        index.graph_inputs = [v.name for v in graph.input if v.name not in initializer_names]
        index.graph_outputs = [v.name for v in graph.output]
        for value in list(graph.input) + list(graph.output) + list(graph.value_info):
            elem = value.type.tensor_type.elem_type
            if elem:
                index.dtype[value.name] = DTYPE_NAMES.get(elem, str(elem))
        for init in graph.initializer:
            index.dtype[init.name] = DTYPE_NAMES.get(init.data_type, str(init.data_type))
            if _small(init.dims) and not init.external_data:
                index.constants[init.name] = numpy_helper.to_array(init)
        for node in graph.node:
            for name in node.output:
                index.producer[name] = node
            for name in node.input:
                if name:
                    index.consumers.setdefault(name, []).append(node)
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value":
                        index.dtype[node.output[0]] = DTYPE_NAMES.get(attr.t.data_type, str(attr.t.data_type))
                        if _small(attr.t.dims):
                            index.constants[node.output[0]] = numpy_helper.to_array(attr.t)
        index.initializers = initializer_names
        index.nodes = list(graph.node)
        index.opsets = {imp.domain or "ai.onnx": imp.version for imp in inferred.opset_import}
        return index

    def single_consumer(self, tensor: str, op_type: str) -> Optional[NodeProto]:
        """The one consumer of ``tensor`` with this op type, or None."""
        found = [n for n in self.consumers.get(tensor, []) if n.op_type == op_type]
        return found[0] if len(found) == 1 else None

    def constant_value(self, tensor: str) -> Optional[np.ndarray]:
        while tensor in self.producer and self.producer[tensor].op_type == "Identity":
            tensor = self.producer[tensor].input[0]
        return self.constants.get(tensor)

    def is_static(self, tensor: str) -> bool:
        """True for initializers and Constant-node outputs, also behind Identity nodes (the exporter's
        way of sharing one initializer between equal weights)."""
        while tensor in self.producer and self.producer[tensor].op_type == "Identity":
            tensor = self.producer[tensor].input[0]
        return tensor in self.initializers or (tensor in self.producer and self.producer[tensor].op_type == "Constant")


def _small(dims) -> bool:
    size = 1
    for d in dims:
        size *= d
    return size <= 64
