"""Every op, opset and dtype of our exported graphs against TensorRT's ONNX operator table (the
version the Dockerfile pins), and the check failing on graphs that hold the known traps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sam_triton.build.repository.tensorrt_repository import GRAPHS
from sam_triton.build.tensorrt.onnx_coverage import (
    UnsupportedGraphError,
    check_exported,
    check_graph,
    load_operator_table,
    require_coverage,
)

DOCKERFILE = Path(__file__).resolve().parents[1] / "Dockerfile"


def test_real_exported_graphs_are_covered(tiny_onnx):
    reports = check_exported(tiny_onnx[0], GRAPHS)
    for name, report in reports.items():
        assert report.ok, "\n".join(report.problems)
        assert report.ops, f"{name}: no ops read"
    assert "LayerNormalization" in reports["sam_encoder"].ops and "ConvTranspose" in reports["sam_decoder"].ops
    assert not {"OneHot", "Tile", "ScatterND", "Resize"} & set(reports["sam_decoder"].ops)
    require_coverage(reports)  # does not raise


def test_operator_table_names_its_source_and_matches_the_dockerfile():
    table = load_operator_table()
    assert "onnx/onnx-tensorrt" in table.source and "operators.md" in table.source
    assert table.tensorrt_version.startswith("10.8.")
    assert f"FROM {table.container}" in DOCKERFILE.read_text()
    assert f"TENSORRT_VERSION={table.tensorrt_version}" in DOCKERFILE.read_text()
    assert "Unique" in table.unsupported and "Attention" in table.unsupported and "MatMul" in table.supported


def _model(nodes, inputs, outputs, initializers=(), opset=17, domains=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    imports = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    return helper.make_model(graph, opset_imports=imports)


def _vi(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, shape)


def _problems(model):
    report = check_graph(model, name="g")
    assert not report.ok
    return "\n".join(report.problems)


def test_fails_on_an_unsupported_op():
    model = _model(
        [helper.make_node("Unique", ["x"], ["y"], name="uniq")], [_vi("x", TensorProto.FLOAT, [4])], [_vi("y", TensorProto.FLOAT, None)]
    )
    assert "node 'uniq' (Unique): Unique is listed as unsupported for TensorRT 10.8.0.43" in _problems(model)
    with pytest.raises(UnsupportedGraphError, match="Unique is listed as unsupported"):
        require_coverage({"g": check_graph(model, name="g")})


def test_fails_on_an_op_added_after_the_pinned_version():
    model = _model(
        [helper.make_node("RMSNormalization", ["x", "s"], ["y"], name="rms")],
        [_vi("x", TensorProto.FLOAT, [2, 4]), _vi("s", TensorProto.FLOAT, [4])],
        [_vi("y", TensorProto.FLOAT, [2, 4])],
        opset=17,
    )
    assert "RMSNormalization is listed as unsupported" in _problems(model)


def test_fails_on_repeat_interleave_one_hot():
    depth = numpy_helper.from_array(np.array(3, np.int64), "depth")
    values = numpy_helper.from_array(np.array([0.0, 1.0], np.float32), "values")
    model = _model(
        [helper.make_node("OneHot", ["i", "depth", "values"], ["y"], name="onehot")],
        [_vi("i", TensorProto.INT32, [4])],
        [_vi("y", TensorProto.FLOAT, None)],
        initializers=[depth, values],
    )
    assert "node 'onehot' (OneHot): SAM's repeat_interleave exports as OneHot -> Tile" in _problems(model)


def test_fails_on_a_data_dependent_output_shape():
    """The official decoder's resize to orig_im_size: the output shape comes from an input's values."""
    lead = numpy_helper.from_array(np.array([1, 1], np.int64), "lead")
    nodes = [
        helper.make_node("Cast", ["orig_im_size"], ["size64"], to=TensorProto.INT64, name="cast"),
        helper.make_node("Concat", ["lead", "size64"], ["sizes"], axis=0, name="concat"),
        helper.make_node("Resize", ["masks", "", "", "sizes"], ["out"], mode="linear", name="resize_to_original"),
    ]
    model = _model(
        nodes,
        [_vi("masks", TensorProto.FLOAT, [1, 1, 256, 256]), _vi("orig_im_size", TensorProto.FLOAT, [2])],
        [_vi("out", TensorProto.FLOAT, None)],
        initializers=[lead],
    )
    assert "node 'resize_to_original' (Resize): input 3 ('sizes') sets an output shape from graph-input values" in _problems(model)


def test_shape_derived_reshapes_are_fine():
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"], name="shape"),
        helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape"),
    ]
    model = _model(nodes, [_vi("x", TensorProto.FLOAT, ["n", 4])], [_vi("y", TensorProto.FLOAT, ["n", 4])])
    assert check_graph(model, name="g").ok


def test_fails_on_int64_arithmetic_on_input_values():
    one = numpy_helper.from_array(np.array(1, np.int64), "one")
    nodes = [
        helper.make_node("Cast", ["labels"], ["labels64"], to=TensorProto.INT64, name="to_index"),
        helper.make_node("Add", ["labels64", "one"], ["index"], name="index_add"),
        helper.make_node("Cast", ["index"], ["out"], to=TensorProto.FLOAT, name="back"),
    ]
    model = _model(nodes, [_vi("labels", TensorProto.FLOAT, [4])], [_vi("out", TensorProto.FLOAT, [4])], initializers=[one])
    assert "node 'index_add' (Add): int64 arithmetic on values computed from graph inputs" in _problems(model)


def test_fails_on_an_unsupported_dtype_opset_and_domain():
    uint8_transpose = _model(
        [helper.make_node("Transpose", ["image"], ["t"], perm=[0, 3, 1, 2], name="permute")],
        [_vi("image", TensorProto.UINT8, [1, 8, 8, 3])],
        [_vi("t", TensorProto.UINT8, [1, 3, 8, 8])],
    )
    assert "node 'permute' (Transpose): tensor 'image' is UINT8; TensorRT 10.8.0.43 supports Transpose on" in _problems(uint8_transpose)
    int_pow = _model(
        [helper.make_node("Pow", ["a", "b"], ["c"], name="ipow")],
        [_vi("a", TensorProto.INT32, [2]), _vi("b", TensorProto.INT32, [2])],
        [_vi("c", TensorProto.INT32, [2])],
    )
    assert "tensor 'a' is INT32" in _problems(int_pow)
    new_opset = _model(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")],
        [_vi("x", TensorProto.FLOAT, [2])],
        [_vi("y", TensorProto.FLOAT, [2])],
        opset=23,
    )
    assert "g: opset 23: TensorRT 10.8.0.43 supports opsets 9 to 20" in _problems(new_opset)
    custom = _model(
        [helper.make_node("Fancy", ["x"], ["y"], domain="com.example", name="fancy")],
        [_vi("x", TensorProto.FLOAT, [2])],
        [_vi("y", TensorProto.FLOAT, [2])],
        domains=["com.example"],
    )
    assert "node 'fancy' (Fancy): custom domain 'com.example' needs a TensorRT plugin" in _problems(custom)
    double_io = _model(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")], [_vi("x", TensorProto.DOUBLE, [2])], [_vi("y", TensorProto.DOUBLE, [2])]
    )
    assert "graph input 'x' is DOUBLE" in _problems(double_io)
    onnx.checker.check_model(uint8_transpose)  # the synthetic graphs are valid ONNX: only TensorRT objects
