"""What several test modules share that is not a fixture: the photos' folder, server start-up,
raw Triton requests (inputs typed by tritonclient's own dtype table), the standard prompts and
answer checks. Test modules import from here (or from fixtures), never from each other
(tests/test_layout.py checks it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import np_to_triton_dtype

from sam_triton.build.export.verify import rel_l2
from sam_triton.build.server.tritonserver import ServerConfig, TritonServer

IMAGES_DIR = Path(__file__).parent / "images"
IMAGE_NAMES = ("truck", "dog", "groceries")
#: The checked-in model repository of the project.
CHECKED_IN = Path(__file__).resolve().parents[1] / "model_repository"


def start_server(repository: Path, cache_dir: Path, log_path: Path, **overrides) -> TritonServer:
    config = ServerConfig.on_free_ports(repository, **overrides)
    return TritonServer(config, log_path=log_path, cache_dir=cache_dir).start()


def serving(request, repository: Path, cache_dir: Path, log_path: Path) -> Iterator[TritonServer]:
    """For fixtures: start a tritonserver, yield it, stop it, and print its log if a test failed meanwhile."""
    srv = start_server(repository, cache_dir, log_path)
    failed_before = request.session.testsfailed
    yield srv
    srv.stop()
    if request.session.testsfailed > failed_before:
        print(f"\n--- tritonserver log ({log_path}) ---\n{srv.log_tail(20000)}")


def serve_argv(repository: Path, cache_dir: Path, log_file: Path, *, grpc_port: Optional[int] = None) -> List[str]:
    """`sam-triton serve`'s arguments for ``repository`` on free loopback ports (gRPC on ``grpc_port`` when given)."""
    from sam_triton.build.server.tritonserver import free_port

    return [
        "serve",
        "--repository",
        str(repository),
        "--grpc-port",
        str(grpc_port or free_port()),
        "--http-port",
        str(free_port()),
        "--metrics-port",
        str(free_port()),
        "--cache-dir",
        str(cache_dir),
        "--log-file",
        str(log_file),
    ]


def checked_in_snapshot() -> Dict[str, Any]:
    """Every file of the checked-in model_repository/ with its bytes and mtime: what no command may change."""
    return {p.relative_to(CHECKED_IN).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns) for p in CHECKED_IN.rglob("*") if p.is_file()}


def triton_inputs(arrays: Dict[str, np.ndarray], module: Any = grpcclient) -> List[Any]:
    """tritonclient InferInputs for ``arrays`` (gRPC, or ``tritonclient.http``), each typed by its array's dtype."""
    items = []
    for name, array in arrays.items():
        item = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        item.set_data_from_numpy(array)
        items.append(item)
    return items


def encoder_arrays(**overrides) -> Dict[str, np.ndarray]:
    """A valid sam_encoder request (batch 1, a blank 1024 image of 512x1024), with ``overrides``."""
    arrays = {"image": np.zeros((1, 1024, 1024, 3), np.uint8), "input_size": np.array([[512, 1024]], np.int32)}
    arrays.update(overrides)
    return arrays


def decoder_arrays(**overrides) -> Dict[str, np.ndarray]:
    """A valid sam_decoder request (one click and its padding point on a zero embedding), with ``overrides``."""
    arrays = {
        "image_embeddings": np.zeros((1, 256, 64, 64), np.float32),
        "point_coords": np.full((1, 1, 2, 2), 100.0, np.float32),
        "point_labels": np.array([[[1, -1]]], np.float32),
        "mask_input": np.zeros((1, 1, 1, 256, 256), np.float32),
        "has_mask_input": np.zeros((1, 1), np.float32),
    }
    arrays.update(overrides)
    return arrays


def prompt_arrays(prompts: int, points: int) -> Dict[str, np.ndarray]:
    """The decoder's prompt inputs for ``prompts`` prompts of ``points`` foreground points each."""
    return dict(
        point_coords=np.full((1, prompts, points, 2), 100.0, np.float32),
        point_labels=np.ones((1, prompts, points), np.float32),
        mask_input=np.zeros((1, prompts, 1, 256, 256), np.float32),
        has_mask_input=np.zeros((1, prompts), np.float32),
    )


#: One click on the dog photo (800x534).
CLICK = dict(point_coords=np.array([[400, 260]]), point_labels=np.array([1]))


def batch_prompts(h: int, w: int) -> Dict[str, Any]:
    return dict(
        point_coords=[np.array([[w * 0.3, h * 0.4]]), np.array([[w * 0.6, h * 0.5], [w * 0.1, h * 0.1]])],
        point_labels=[np.array([1]), np.array([1, 0])],
        boxes=[None, np.array([10, 10, w - 10, h - 10])],
    )


def answers(client, image: np.ndarray) -> List[Any]:
    """A click, a box and a batch of prompts on ``image``: what the transport tests compare."""
    client.set_image(image)
    h, w = image.shape[:2]
    return [
        client.predict(**CLICK),
        client.predict(box=np.array([50, 40, w - 60, h - 30]), multimask_output=False),
        client.predict_batch(**batch_prompts(h, w)),
    ]


def assert_same_answers(got, want) -> None:
    for (masks, iou, logits), (ref_masks, ref_iou, ref_logits) in zip(got, want):
        assert masks.shape == ref_masks.shape and np.mean(masks == ref_masks) >= 0.9999
        np.testing.assert_allclose(iou, ref_iou, atol=1e-5)
        assert rel_l2(logits, ref_logits) <= 1e-5
