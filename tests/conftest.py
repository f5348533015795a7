"""Shared fixtures: the tiny preset, its checked ONNX export, a repository and a real tritonserver.

The server is the embedded tritonserver from nvidia-pytriton on free loopback ports; it is
started once per session and always stopped, with its log printed when a test failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterator

import numpy as np
import pytest

from sam_triton.build.repository.assemble import RepositoryOptions, assemble
from sam_triton.client.images import load_image

from .helpers import IMAGE_NAMES, IMAGES_DIR, serving


@pytest.fixture(scope="session", autouse=True)
def private_key_directory(tmp_path_factory) -> Iterator[Path]:
    """Servers' key files (client/transport/server_key.py) go to a folder of this run only.

    The user's own folder may hold the key file of a server that died without removing it, on a
    port a test's server or proxy gets again: a client on that port would send that stale key.
    """
    directory = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_RUNTIME_DIR", str(directory))
        yield directory / "sam-triton"


@pytest.fixture(scope="session")
def images() -> Dict[str, np.ndarray]:
    """The real photos: name -> HxWx3 uint8 RGB."""
    return {name: load_image(IMAGES_DIR / f"{name}.jpg") for name in IMAGE_NAMES}


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def tiny_sam():
    from sam_triton.build.models.presets import build_random

    return build_random("tiny")


@pytest.fixture(scope="session")
def tiny_onnx(cache_dir, tiny_sam):
    """(onnx_dir, manifest) of the tiny preset, exported and checked against SamPredictor."""
    from sam_triton.build.export.pipeline import ModelChoice, prepare_onnx

    return prepare_onnx(ModelChoice(model_type="tiny"), cache_dir=cache_dir, check_image=IMAGES_DIR / "truck.jpg")


@pytest.fixture(scope="session")
def python_repository(tmp_path_factory, tiny_onnx) -> Path:
    repository = tmp_path_factory.mktemp("repo") / "model_repository"
    return assemble(repository, RepositoryOptions(runtime="python"), onnx_dir=tiny_onnx[0])


@pytest.fixture(scope="session")
def server(request, python_repository, cache_dir, tmp_path_factory):
    """A running tritonserver serving the tiny preset's python-runtime repository."""
    yield from serving(request, python_repository, cache_dir, tmp_path_factory.mktemp("logs") / "tritonserver.log")


@pytest.fixture(scope="session")
def grpc_url(server) -> str:
    return server.config.grpc_url


@pytest.fixture(scope="session")
def predictor_for(tiny_sam):
    """SamPredictor on the tiny preset, with set_image cached per image name."""
    from segment_anything import SamPredictor

    predictors = {}

    def get(name: str, image: np.ndarray):
        if name not in predictors:
            predictor = SamPredictor(tiny_sam)
            predictor.set_image(image)
            predictors[name] = predictor
        return predictors[name]

    return get
