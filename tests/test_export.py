"""The exported graphs: checked against SamPredictor, described by a manifest, free of TensorRT traps."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from sam_triton.build.export.exporter import DECODER_FILE, ENCODER_FILE, OPSET, export_onnx
from sam_triton.build.export.verify import ExportCheckError, ort_session, verify_onnx
from sam_triton.build.models.presets import ModelSource, build_random, infer_model_type, load_checkpoint, save_random_checkpoint


def test_manifest_records_opset_axes_and_ops(tiny_onnx):
    onnx_dir, _manifest = tiny_onnx
    on_disk = json.loads((onnx_dir / "manifest.json").read_text())
    assert on_disk["opset"] == OPSET == 17
    assert on_disk["weights"] == "preset:tiny:seed0"
    decoder = on_disk["graphs"]["sam_decoder"]
    shapes = {i["name"]: i["shape"] for i in decoder["inputs"]}
    assert shapes["point_coords"] == ["batch", "prompts", "points", 2]
    assert shapes["mask_input"] == ["batch", "prompts", 1, 256, 256]
    assert {o["name"]: o["shape"] for o in decoder["outputs"]}["low_res_masks"] == ["batch", "prompts", 4, 256, 256]
    encoder = on_disk["graphs"]["sam_encoder"]
    assert {i["name"]: (i["dtype"], i["shape"]) for i in encoder["inputs"]} == {
        "image": ("UINT8", ["batch", 1024, 1024, 3]),
        "input_size": ("INT32", ["batch", 2]),
    }
    for graph in (encoder, decoder):
        assert graph["opset_imports"]["ai.onnx"] == 17
        assert sum(graph["ops"].values()) == len(onnx.load(str(onnx_dir / graph["file"])).graph.node)
    check = on_disk["check"]
    assert check["embedding_rel_l2"] < 1e-4 and max(check["logits_rel_l2"].values()) < 1e-4


def test_decoder_has_no_tensorrt_traps(tiny_onnx):
    """repeat_interleave's OneHot/Tile and the data-dependent resize must not be in the graph."""
    ops = tiny_onnx[1]["graphs"]["sam_decoder"]["ops"]
    for trap in ("OneHot", "Tile", "ScatterND", "Resize", "NonZero"):
        assert trap not in ops, f"{trap} in the decoder graph"


def test_checkpoint_round_trip_and_type_inference(tmp_path):
    path = save_random_checkpoint("tiny", tmp_path / "tiny.pth", seed=3)
    sam, source = load_checkpoint(path)
    assert source.model_type == "tiny" and source.checkpoint_sha256
    reference = build_random("tiny", seed=3).state_dict()
    for key, value in sam.state_dict().items():
        assert np.array_equal(value.numpy(), reference[key].numpy()), key
    with pytest.raises(ValueError, match="does not match the checkpoint"):
        load_checkpoint(path, "vit_b")
    with pytest.raises(ValueError, match="expected a SAM state dict"):
        infer_model_type({"foo": 1})


def test_check_fails_with_figures_when_graphs_disagree(tmp_path, images):
    """Export one seed, check against another: the check must fail and say by how much."""
    export_onnx(build_random("tiny", seed=1), ModelSource("tiny", seed=1), tmp_path)
    with pytest.raises(ExportCheckError, match=r"image embedding relative L2 error \d"):
        verify_onnx(build_random("tiny", seed=2), tmp_path, images["dog"])


def test_graphs_run_with_batch_prompts_and_points(tiny_onnx):
    onnx_dir = tiny_onnx[0]
    encoder, decoder = ort_session(onnx_dir / ENCODER_FILE), ort_session(onnx_dir / DECODER_FILE)
    (embeddings,) = encoder.run(
        None,
        {
            "image": np.zeros((2, 1024, 1024, 3), np.uint8),
            "input_size": np.array([[1024, 683], [512, 1024]], np.int32),
        },
    )
    assert embeddings.shape == (2, 256, 64, 64)
    iou, masks = decoder.run(
        None,
        {
            "image_embeddings": embeddings,
            "point_coords": np.full((2, 5, 3, 2), 100.0, np.float32),
            "point_labels": np.ones((2, 5, 3), np.float32),
            "mask_input": np.zeros((2, 5, 1, 256, 256), np.float32),
            "has_mask_input": np.zeros((2, 5), np.float32),
        },
    )
    assert iou.shape == (2, 5, 4) and masks.shape == (2, 5, 4, 256, 256)
