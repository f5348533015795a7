"""MobileSAM (``vit_t``) on the same contract: the export checked against MobileSAM's SamPredictor,
every runtime's repository, the model type read from the weights, and masks through a real
tritonserver equal to MobileSAM's PyTorch predictor's.

Seeded random weights (``--preset vit_t``). A vit_t encode costs about 2 s here, so the module
runs three: the export check's (ONNX Runtime), the server's and the reference predictor's. The
export is traced at batch 2 and checked at batch 1, so a batch baked into the graph fails here.
"""

from __future__ import annotations

import numpy as np
import pytest

from sam_triton.build.export.pipeline import ModelChoice, prepare_onnx
from sam_triton.build.export.verify import REL_L2_TOLERANCE
from sam_triton.build.models.mobile_sam import predictor as reference_predictor
from sam_triton.build.models.presets import build_random, infer_model_type, load_checkpoint, save_random_checkpoint
from sam_triton.build.repository.assemble import RUNTIMES, RepositoryOptions, assemble, config_files, runtime_files
from sam_triton.build.repository.tensorrt_repository import GRAPHS
from sam_triton.build.tensorrt.onnx_coverage import check_exported
from sam_triton.build.tensorrt.precision import select_fp32_nodes
from sam_triton.build.tensorrt.profiles import model_profiles
from sam_triton.client import SamClient, contract
from sam_triton.client.contract import DEFAULT_LIMITS
from sam_triton.perf.studies.fidelity import compare, prompts_for

from .conftest import IMAGES_DIR, serving

MASK_AGREEMENT = 0.999


@pytest.fixture(scope="module")
def vit_t_onnx(cache_dir):
    return prepare_onnx(ModelChoice(model_type="vit_t"), cache_dir=cache_dir, check_image=IMAGES_DIR / "truck.jpg")


@pytest.fixture(scope="module")
def vit_t_server(tmp_path_factory, request, cache_dir, vit_t_onnx):
    """The default runtime (openvino: encoder on OpenVINO FP32, decoder on ONNX Runtime) of vit_t."""
    repository = assemble(tmp_path_factory.mktemp("vit_t") / "model_repository", RepositoryOptions(), onnx_dir=vit_t_onnx[0])
    yield from serving(request, repository, cache_dir, tmp_path_factory.mktemp("logs") / "vit_t.log")


def test_export_is_checked_against_mobile_sams_predictor(vit_t_onnx):
    manifest = vit_t_onnx[1]
    assert manifest["model_type"] == "vit_t" and manifest["weights"] == "preset:vit_t:seed0"
    check = manifest["check"]
    assert check["embedding_rel_l2"] <= REL_L2_TOLERANCE, check
    assert max(check["logits_rel_l2"].values()) <= REL_L2_TOLERANCE, check
    encoder = manifest["graphs"][contract.ENCODER_MODEL]
    assert [i["shape"] for i in encoder["inputs"]] == [["batch", 1024, 1024, 3], ["batch", 2]]
    assert encoder["outputs"][0]["shape"] == ["batch", 256, 64, 64]
    assert encoder["ops"]["Conv"] > 20 and "Einsum" not in encoder["ops"]  # TinyViT's convolutions, no ViT rel-pos einsum


def test_reference_is_mobile_sams_own_predictor():
    sam = build_random("tiny")
    assert type(reference_predictor(sam)).__module__.startswith("segment_anything")
    assert type(reference_predictor(build_random("vit_t"))).__module__.startswith("mobile_sam")


def test_tensorrt_op_coverage_fp32_groups_and_profiles(vit_t_onnx):
    reports = check_exported(vit_t_onnx[0], GRAPHS)
    for name, report in reports.items():
        assert report.ok, f"{name}: " + "\n".join(report.problems)
    groups = select_fp32_nodes(vit_t_onnx[0] / GRAPHS[contract.ENCODER_MODEL], ["layernorm", "softmax"])
    assert len(groups["layernorm"]) == 20 and len(groups["softmax"]) == 10  # TinyViT's 10 attention blocks
    image = next(p for p in model_profiles(contract.ENCODER_MODEL, DEFAULT_LIMITS) if p.name == contract.IMAGE.name)
    assert image.max == (DEFAULT_LIMITS.max_batch_size, 1024, 1024, 3)


@pytest.mark.parametrize("runtime", sorted(name for name, spec in RUNTIMES.items() if spec.artifact == "model.onnx"))
def test_every_onnx_runtime_repository_holds_the_vit_t_graphs(tmp_path, vit_t_onnx, runtime):
    options = RepositoryOptions(runtime=runtime)
    repository = assemble(tmp_path / "repo", options, onnx_dir=vit_t_onnx[0])
    assert {p.relative_to(repository).as_posix() for p in repository.rglob("*") if p.is_file()} == runtime_files(options)
    encoder = repository / contract.ENCODER_MODEL / "1" / "model.onnx"
    assert encoder.read_bytes() == (vit_t_onnx[0] / GRAPHS[contract.ENCODER_MODEL]).read_bytes()
    assert "sam_encoder/config.pbtxt" in config_files(RepositoryOptions(runtime="tensorrt"))


def test_model_type_is_inferred_from_a_saved_state_dict(tmp_path):
    path = save_random_checkpoint("vit_t", tmp_path / "mobile_sam.pt", seed=3)
    sam, source = load_checkpoint(path)
    assert source.model_type == "vit_t" and source.checkpoint_sha256
    reference = build_random("vit_t", seed=3).state_dict()
    for key, value in sam.state_dict().items():
        assert np.array_equal(value.numpy(), reference[key].numpy()), key
    with pytest.raises(ValueError, match="does not match the checkpoint"):
        load_checkpoint(path, "vit_b")
    shallower = {k: v for k, v in reference.items() if not k.startswith("image_encoder.layers.3.")}
    with pytest.raises(ValueError, match=r"TinyViT encoder of widths \(64, 128, 160\) and depths \(2, 2, 6\)"):
        infer_model_type(shallower)


def test_served_masks_equal_mobile_sams_predictor(vit_t_server, images):
    image = images["dog"]
    predictor = reference_predictor(build_random("vit_t"))
    predictor.set_image(image)
    with SamClient(vit_t_server.config.grpc_url, timeout_s=120) as client:
        client.set_image(image)
        for kind, prompt in prompts_for(*image.shape[:2]).items():
            for multimask in (True, False):
                figures = compare(
                    client.predict(multimask_output=multimask, **prompt), predictor.predict(multimask_output=multimask, **prompt)
                )
                what = f"{kind}, multimask {multimask}"
                assert figures.logits_rel_l2 <= REL_L2_TOLERANCE, f"{what}: {figures}"
                assert figures.mask_agreement >= MASK_AGREEMENT, f"{what}: {figures}"
