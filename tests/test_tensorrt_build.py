"""The real TensorRT path: build plans of the tiny preset, check their metadata, serve them with
Triton's TensorRT backend and segment a photo. It needs TensorRT, a CUDA GPU and (for serving) a
tritonserver with the tensorrt backend, as in the Docker image; elsewhere it is skipped, saying
which is missing. No stand-in for TensorRT exists in this project."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from sam_triton.build.repository.stale_plans import ensure_plans_fresh
from sam_triton.cli.main import main

from .helpers import IMAGES_DIR, start_server


def _missing() -> str:
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (it runs in the Docker image or with pip install tensorrt on a GPU machine)"
    from sam_triton.build.tensorrt.cuda_device import CudaError, device_identity

    try:
        device_identity(0)
    except CudaError as exc:
        return f"no usable CUDA GPU: {exc}"
    return ""


pytestmark = pytest.mark.skipif(bool(_missing()), reason=_missing() or "TensorRT and a GPU are present")
TRITON_TENSORRT_BACKEND = Path("/opt/tritonserver/backends/tensorrt")


@pytest.fixture(scope="module")
def tensorrt_repository(tmp_path_factory, tiny_onnx, cache_dir):
    repo = tmp_path_factory.mktemp("trt") / "model_repository"
    code = main(
        [
            "build",
            "--runtime",
            "tensorrt",
            "--preset",
            "tiny",
            "--repository",
            str(repo),
            "--onnx-dir",
            str(tiny_onnx[0]),
            "--cache-dir",
            str(cache_dir),
            "--precision",
            "mixed",
            "--builder-optimization-level",
            "0",
            "--max-batch-size",
            "2",
            "--max-prompts",
            "4",
            "--max-points",
            "4",
            "--decoder-cuda-graphs",
            "--image",
            str(IMAGES_DIR / "dog.jpg"),
        ]
    )
    assert code == 0
    return repo


def test_build_writes_plans_metadata_and_configs(tensorrt_repository, cache_dir):
    from sam_triton.build.tensorrt.engine import runtime_identity

    identity = runtime_identity()
    for model in ("sam_encoder", "sam_decoder"):
        version_dir = tensorrt_repository / model / "1"
        assert (version_dir / "model.plan").stat().st_size > 0
        meta = json.loads((version_dir / "model.plan.json").read_text())
        assert meta["tensorrt_version"] == identity.tensorrt_version and meta["gpu_name"] == identity.gpu_name
        assert meta["precision"] == "mixed" and meta["fp32_layers"] > 0 and meta["limits"]["max_batch_size"] == 2
        assert meta["check"]["image"].endswith("dog.jpg")
        assert 'platform: "tensorrt_plan"' in (tensorrt_repository / model / "config.pbtxt").read_text()
    assert (cache_dir / "tensorrt" / "timing.cache").stat().st_size > 0
    assert ensure_plans_fresh(tensorrt_repository, expected_weights="preset:tiny:seed0", runtime=identity)


@pytest.mark.skipif(
    shutil.which("tritonserver") is None or not TRITON_TENSORRT_BACKEND.is_dir(),
    reason="no tritonserver with the tensorrt backend here (the NGC image has one)",
)
def test_triton_serves_the_plans(tensorrt_repository, cache_dir, tmp_path, images, predictor_for):
    from sam_triton.client import SamClient

    server = start_server(
        tensorrt_repository,
        cache_dir,
        tmp_path / "tritonserver.log",
        tritonserver=Path(shutil.which("tritonserver")),
        backend_directory=Path("/opt/tritonserver/backends"),
    )
    try:
        image = images["dog"]
        with SamClient(server.config.grpc_url) as client:
            client.set_image(image)
            masks, _scores, _ = client.predict(point_coords=np.array([[400, 250]]), point_labels=np.array([1]), multimask_output=True)
        reference, _, _ = predictor_for("dog", image).predict(
            point_coords=np.array([[400, 250]]), point_labels=np.array([1]), multimask_output=True
        )
        ious = [np.logical_and(m, r).sum() / max(np.logical_or(m, r).sum(), 1) for m, r in zip(masks, reference)]
        assert masks.shape == reference.shape and min(ious) > 0.9, ious
    finally:
        server.stop()
