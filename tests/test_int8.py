"""``--precision int8``: the encoder quantized by NNCF, served by the openvino runtime through a real
tritonserver, its masks against the FP32 server's (the tiny preset, seeded random weights).

Random weights lack the activation outliers of trained SAM weights, so agreement here is a floor
for the code path, not a promise for real checkpoints: `python -m sam_triton.perf.studies.fidelity
--precisions fp32 int8 --models CHECKPOINT --photos ...` measures a real one.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from sam_triton.build.export.quantize import INT8_XML, SCOPES, quantized_encoder
from sam_triton.build.repository.assemble import RepositoryOptions, assemble, runtime_files
from sam_triton.build.repository.openvino_options import OpenVinoOptions
from sam_triton.client import SamClient, contract
from sam_triton.perf.studies.fidelity import prompts_for

from .conftest import IMAGE_NAMES, serving

#: INT8 (random weights) against FP32: share of equal full-resolution mask pixels, worst prompt.
#: Measured 99.7 % on the tiny preset (docs/studies/cpu_encoders.md has vit_t and ViT-B).
MASK_AGREEMENT = 0.97


def _server(tmp_path_factory, request, cache_dir, tiny_onnx, precision: str):
    options = RepositoryOptions(runtime="openvino", openvino=OpenVinoOptions(precision=precision))
    repository = assemble(tmp_path_factory.mktemp(f"int8-{precision}") / "model_repository", options, onnx_dir=tiny_onnx[0])
    yield from serving(request, repository, cache_dir, tmp_path_factory.mktemp("logs") / f"openvino-{precision}.log")


@pytest.fixture(scope="module")
def int8_server(tmp_path_factory, request, cache_dir, tiny_onnx):
    yield from _server(tmp_path_factory, request, cache_dir, tiny_onnx, "int8")


@pytest.fixture(scope="module")
def fp32_server(tmp_path_factory, request, cache_dir, tiny_onnx):
    yield from _server(tmp_path_factory, request, cache_dir, tiny_onnx, "fp32")


def test_int8_repository_holds_nncfs_model_and_the_fp32_decoder(tmp_path, tiny_onnx):
    options = RepositoryOptions(runtime="openvino", openvino=OpenVinoOptions(precision="int8"))
    repository = assemble(tmp_path / "repo", options, onnx_dir=tiny_onnx[0])
    files = {p.relative_to(repository).as_posix() for p in repository.rglob("*") if p.is_file()}
    assert files == runtime_files(options)
    assert {"sam_encoder/1/model.xml", "sam_encoder/1/model.bin", "sam_decoder/1/model.onnx"} <= files
    assert "sam_encoder/1/model.onnx" not in files
    assert "FakeQuantize" in (repository / "sam_encoder/1/model.xml").read_text()
    from sam_triton.build.repository.model_config import read_configs
    from sam_triton.perf.benchmark.served import served_engines

    assert served_engines(read_configs(repository)) == {"sam_encoder": "openvino-int8", "sam_decoder": "onnxruntime"}
    # cached: a second build reuses the quantized model
    xml = quantized_encoder(tiny_onnx[0])
    assert xml.name == INT8_XML and (repository / "sam_encoder/1/model.xml").read_bytes() == xml.read_bytes()
    mtime = xml.stat().st_mtime_ns
    assert quantized_encoder(tiny_onnx[0]).stat().st_mtime_ns == mtime


@pytest.mark.parametrize("runtime", ["openvino-backend", "python", "onnxruntime"])
def test_int8_is_refused_where_no_int8_encoder_runs(runtime):
    with pytest.raises(ValueError, match=r"precision int8: an INT8 encoder runs on --runtime openvino only"):
        RepositoryOptions(runtime=runtime, openvino=OpenVinoOptions(precision="int8"))


def test_unknown_ignored_scope_is_refused(tiny_onnx):
    with pytest.raises(ValueError, match=rf"INT8 ignored scope 'everything': expected one of {re.escape(str(sorted(SCOPES)))}"):
        quantized_encoder(tiny_onnx[0], scope="everything")


def test_int8_masks_agree_with_fp32(int8_server, fp32_server, images):
    log = int8_server.log_tail(200000)
    assert re.search(r"sam_encoder: OpenVINO [^\n]*model\.xml", log), "the encoder does not run the INT8 model.xml"
    worst = 1.0
    with SamClient(int8_server.config.grpc_url, timeout_s=120) as int8, SamClient(fp32_server.config.grpc_url, timeout_s=120) as fp32:
        for name in IMAGE_NAMES:
            image = images[name]
            int8.set_image(image)
            fp32.set_image(image)
            embedding, reference = int8.get_image_embedding(), fp32.get_image_embedding()
            assert embedding.shape == reference.shape == (1, contract.EMBED_DIM, contract.EMBED_SIZE, contract.EMBED_SIZE)
            assert not np.array_equal(embedding, reference)  # INT8 really ran
            for prompt in prompts_for(*image.shape[:2]).values():
                masks, _, _ = int8.predict(multimask_output=True, **prompt)
                ref_masks, _, _ = fp32.predict(multimask_output=True, **prompt)
                worst = min(worst, float(np.mean(masks == ref_masks)))
    print(f"INT8 vs FP32 worst mask agreement {worst:.5%}")
    assert worst >= MASK_AGREEMENT, f"INT8 masks agree with FP32 on only {worst:.4%} of pixels (random weights)"
