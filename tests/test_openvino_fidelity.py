"""OpenVINO through a real tritonserver: FP32 keeps the end-to-end bar, BF16 gives its published figures.

FP32: the end-to-end fidelity tests of tests/test_fidelity.py run again, unchanged, against a
server of ``--runtime openvino --decoder-engine openvino`` (both models on OpenVINO FP32): this
module's ``client`` fixture replaces theirs.

BF16: the default BF16 build (encoder on OpenVINO BF16, decoder on ONNX Runtime FP32), here in
throughput mode with two streams; its figures per prompt kind must be the ones published in
docs/studies/openvino_fidelity.json (and the README) within a factor of two. Where the CPU has no
native BF16, the model runs FP32 instead, says so in the server log, and keeps the FP32 bar.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from sam_triton.build.export.verify import rel_l2
from sam_triton.build.repository.assemble import RepositoryOptions, assemble
from sam_triton.build.repository.openvino_options import OpenVinoOptions, cpu_capabilities
from sam_triton.client import SamClient
from sam_triton.client.predictor.transforms import prepare_image
from sam_triton.perf.studies.fidelity import PROMPT_KINDS, markdown_table, measure

from .fidelity_checks import (  # noqa: F401  (re-run here)
    IOU_ABS,
    LOGITS_REL_L2,
    MASK_AGREEMENT,
    test_predict_matches_sampredictor,
    test_second_pass_with_mask_input,
    test_segment_through_ensemble_matches_sampredictor,
)
from .helpers import serving, triton_inputs

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "docs" / "studies" / "openvino_fidelity.json"
#: Measured BF16 figures may differ from the published ones by this factor either way (other CPUs
#: round differently: AMX vs AVX-512 BF16 kernels). Much smaller errors would mean BF16 is not running.
FACTOR = 2.0
#: Errors below these floors count as equal (FP32 noise).
FLOORS = {"logits_rel_l2": 1e-6, "iou_abs": 1e-6, "mask_disagreement": 1e-5}


def _serving(tmp_path_factory, request, cache_dir, tiny_onnx, name: str, options: RepositoryOptions):
    """Serve the tiny preset's repository of ``options`` (conftest's ``serving``: stopped after, log printed on failure)."""
    repository = assemble(tmp_path_factory.mktemp(name) / "model_repository", options, onnx_dir=tiny_onnx[0])
    yield from serving(request, repository, cache_dir, tmp_path_factory.mktemp("logs") / f"{name}.log")


@pytest.fixture(scope="module")
def openvino_fp32_server(tmp_path_factory, request, cache_dir, tiny_onnx):
    options = RepositoryOptions(runtime="openvino", decoder_engine="openvino")
    yield from _serving(tmp_path_factory, request, cache_dir, tiny_onnx, "openvino-fp32", options)


@pytest.fixture(scope="module")
def client(openvino_fp32_server):
    """The client of tests/test_fidelity.py's tests, here against OpenVINO FP32."""
    with SamClient(openvino_fp32_server.config.grpc_url, timeout_s=120) as c:
        yield c


@pytest.fixture(scope="module")
def openvino_bf16_server(tmp_path_factory, request, cache_dir, tiny_onnx):
    options = RepositoryOptions(runtime="openvino", openvino=OpenVinoOptions(precision="bf16", performance_hint="throughput", streams=2))
    yield from _serving(tmp_path_factory, request, cache_dir, tiny_onnx, "openvino-bf16", options)


def test_fp32_server_runs_openvino_fp32(openvino_fp32_server):
    log = openvino_fp32_server.log_tail(200000)
    for model in ("sam_encoder", "sam_decoder"):
        assert re.search(rf"{model}: OpenVINO [^\n]*inference precision f32", log), f"{model} does not report OpenVINO FP32"


def _within(measured: float, published: float, floor: float) -> bool:
    return abs(math.log(max(measured, floor) / max(published, floor))) <= math.log(FACTOR)


def test_bf16_figures_are_the_published_ones(openvino_bf16_server, images, predictor_for):
    server = openvino_bf16_server
    with SamClient(server.config.grpc_url, timeout_s=120) as bf16_client:
        figures = measure(bf16_client, predictor_for, images)
    assert sorted(k for k in figures if k != "embedding_rel_l2") == sorted(PROMPT_KINDS)
    log = server.log_tail(200000)
    if "BF16" not in cpu_capabilities()["capabilities"]:
        assert "BF16 asked for, but this CPU" in log and "running FP32" in log
        for kind in PROMPT_KINDS:
            assert figures[kind]["logits_rel_l2"] <= LOGITS_REL_L2 and figures[kind]["iou_abs"] <= IOU_ABS
            assert figures[kind]["mask_agreement"] >= MASK_AGREEMENT
        return
    assert "sam_encoder: OpenVINO" in log and "inference precision bf16" in log
    published = json.loads(STUDY.read_text())["models"]["tiny"]["bf16"]
    problems = []
    for kind in PROMPT_KINDS:
        got, want = figures[kind], published[kind]
        pairs = {
            "logits_rel_l2": (got["logits_rel_l2"], want["logits_rel_l2"]),
            "iou_abs": (got["iou_abs"], want["iou_abs"]),
            "mask_disagreement": (1 - got["mask_agreement"], 1 - want["mask_agreement"]),
        }
        problems += [
            f"{kind} {name}: measured {m:.3g}, published {p:.3g}" for name, (m, p) in pairs.items() if not _within(m, p, FLOORS[name])
        ]
    if not _within(figures["embedding_rel_l2"], published["embedding_rel_l2"], FLOORS["logits_rel_l2"]):
        problems.append(f"embedding: measured {figures['embedding_rel_l2']:.3g}, published {published['embedding_rel_l2']:.3g}")
    assert not problems, f"BF16 figures differ from {STUDY.name} by more than {FACTOR}x:\n  " + "\n  ".join(problems)


def test_published_figures_are_the_readme_table():
    study = json.loads(STUDY.read_text())
    readme = (ROOT / "README.md").read_text()
    assert markdown_table(study) in readme, "README.md's OpenVINO fidelity table differs from docs/studies/openvino_fidelity.json"


def test_streams_split_a_batch_and_answer_each_item_as_alone(openvino_bf16_server, images):
    """Two photos in one encoder request run on two OpenVINO streams; each answer equals its batch-1 answer."""
    server = openvino_bf16_server
    prepared = [prepare_image(images[name]) for name in ("truck", "dog")]

    def encode(items):
        inputs = triton_inputs({"image": np.stack([p[0] for p in items]), "input_size": np.stack([p[1] for p in items])})
        with grpcclient.InferenceServerClient(server.config.grpc_url) as raw:
            return raw.infer("sam_encoder", inputs, client_timeout=120).as_numpy("image_embeddings")

    both = encode(prepared)
    assert both.shape == (2, 256, 64, 64)
    for index, item in enumerate(prepared):
        assert rel_l2(both[index], encode([item])[0]) <= 1e-6
