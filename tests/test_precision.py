"""The FP32-kept layer groups select exactly SAM's LayerNorms, LayerNorm2d chains, softmaxes and
attention logits in our real exported graphs (the tiny preset: 2 ViT blocks, SAM's full decoder)."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest

from sam_triton.build.export.onnx_graph import GraphIndex
from sam_triton.build.tensorrt.precision import DEFAULT_FP32_GROUPS, FP32_GROUPS, PrecisionChoice, parse_groups, select_fp32_nodes

log = logging.getLogger(__name__)

LAYERNORM2D_OPS = ["ReduceMean", "Sub", "Pow", "ReduceMean", "Add", "Sqrt", "Div", "Mul", "Add"]
DECODER_ATTENTIONS = [
    f"/transformer/layers.{i}/{name}" for i in (0, 1) for name in ("self_attn", "cross_attn_token_to_image", "cross_attn_image_to_token")
] + ["/transformer/final_attn_token_to_image"]


@pytest.fixture(scope="module")
def graphs(tiny_onnx):
    onnx_dir = Path(tiny_onnx[0])
    return {name: GraphIndex.build(onnx_dir / f"{name}.onnx") for name in ("sam_encoder", "sam_decoder")}


def _selected(graphs, model):
    selection = select_fp32_nodes(graphs[model], list(FP32_GROUPS))
    for group, names in selection.items():
        log.info("%s %s selects %d nodes: %s", model, group, len(names), names)
    return selection


def _op_types(index, names):
    ops = {n.name: n.op_type for n in index.nodes}
    return [ops[name] for name in names]


def test_encoder_groups(graphs):
    sel, index = _selected(graphs, "sam_encoder"), graphs["sam_encoder"]
    assert sel["layernorm"] == [f"/image_encoder/blocks.{b}/norm{n}/LayerNormalization" for b in (0, 1) for n in (1, 2)]
    assert sel["softmax"] == ["/image_encoder/blocks.0/attn/Softmax", "/image_encoder/blocks.1/attn/Softmax"]
    # SAM's LayerNorm2d in the neck (neck.1 and neck.3), matched by structure, not by name
    for prefix in ("/image_encoder/neck/neck.1/", "/image_encoder/neck/neck.3/"):
        chain = [n for n in sel["layernorm2d"] if n.startswith(prefix)]
        assert _op_types(index, chain) == LAYERNORM2D_OPS, chain
    assert len(sel["layernorm2d"]) == 2 * len(LAYERNORM2D_OPS)  # neck.3 shares neck.1's weights through Identity nodes
    # attention logits: q @ k^T plus the two relative-position Einsums and the adds/reshapes to the softmax
    for block in (0, 1):
        prefix = f"/image_encoder/blocks.{block}/attn/"
        chain = [n for n in sel["attention_logits"] if n.startswith(prefix)]
        assert f"{prefix}MatMul" in chain and f"{prefix}MatMul_1" not in chain  # not attn @ v
        assert Counter(_op_types(index, chain)) == Counter({"MatMul": 1, "Einsum": 2, "Add": 2, "Reshape": 2, "Unsqueeze": 2})
    assert len(sel["attention_logits"]) == 18


def test_decoder_groups(graphs):
    sel, index = _selected(graphs, "sam_decoder"), graphs["sam_decoder"]
    assert sel["layernorm"] == [f"/transformer/layers.{i}/norm{n}/LayerNormalization" for i in (0, 1) for n in (1, 2, 3, 4)] + [
        "/transformer/norm_final_attn/LayerNormalization"
    ]
    assert sel["softmax"] == [f"{a}/Softmax" for a in DECODER_ATTENTIONS]
    for prefix in (
        "/mask_downscaling/mask_downscaling.1/",
        "/mask_downscaling/mask_downscaling.4/",
        "/output_upscaling/output_upscaling.1/",
    ):
        chain = [n for n in sel["layernorm2d"] if n.startswith(prefix)]
        assert _op_types(index, chain) == LAYERNORM2D_OPS, chain
    assert len(sel["layernorm2d"]) == 3 * len(LAYERNORM2D_OPS)
    for attention in DECODER_ATTENTIONS:
        chain = [n for n in sel["attention_logits"] if n.startswith(attention + "/")]
        assert chain[0] == f"{attention}/MatMul" and _op_types(index, chain) == ["MatMul", "Div"]  # q @ k^T / sqrt(c)
    assert len(sel["attention_logits"]) == 2 * len(DECODER_ATTENTIONS)
    # the point encoding: coords -> (+0.5, /1024, *2, -1) -> @ Gaussian matrix -> *2pi -> sin, cos -> concat
    assert _op_types(index, sel["prompt_pe"]) == ["Add", "Div", "Mul", "Sub", "MatMul", "Mul", "Sin", "Cos", "Concat"]
    gaussian = next(n for n in index.nodes if n.name in sel["prompt_pe"] and n.op_type == "MatMul").input[1]
    assert gaussian == "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"


def test_union_and_whole_model_groups(graphs):
    for model, index in graphs.items():
        sel = _selected(graphs, model)
        assert sorted(sel["attention"]) == sorted(sel["attention_logits"] + sel["softmax"])
        assert sel["all"] == [n.name for n in index.nodes if n.op_type != "Constant"]
    assert select_fp32_nodes(graphs["sam_encoder"], ["prompt_pe"]) == {"prompt_pe": []}  # the encoder has no prompts


def test_every_default_group_selects_something(graphs):
    for model, groups in DEFAULT_FP32_GROUPS.items():
        for group, names in select_fp32_nodes(graphs[model], groups).items():
            assert names, f"DEFAULT_FP32_GROUPS[{model}] names {group}, which selects nothing in the exported graph"


def test_precision_choice_validates_its_inputs():
    assert parse_groups("layernorm, softmax") == ("layernorm", "softmax") and parse_groups("none") == ()
    with pytest.raises(ValueError, match="--fp32-groups 'layernorm,gelu': expected a comma-separated list of"):
        parse_groups("layernorm,gelu")
    with pytest.raises(ValueError, match="--fp32-groups applies to --precision mixed only"):
        PrecisionChoice(precision="fp16", fp32_groups=("softmax",))
    with pytest.raises(ValueError, match="precision 'int8': expected one of"):
        PrecisionChoice(precision="int8")
    mixed = PrecisionChoice(precision="mixed")
    assert mixed.groups_for("sam_encoder") == DEFAULT_FP32_GROUPS["sam_encoder"] and mixed.fp16
    assert PrecisionChoice(precision="fp16").groups_for("sam_encoder") == () and not PrecisionChoice(precision="fp32").fp16
