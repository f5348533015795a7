"""`serve` stops cleanly: SIGTERM drains the requests in flight and exits 0; a model that fails to
load makes it exit non-zero at once, naming the model and Triton's reason. (A stale TensorRT plan
is refused before Triton starts: tests/test_stale_plans.py.)"""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tritonclient.grpc as grpcclient

from sam_triton.build.server.tritonserver import free_port
from sam_triton.cli.main import main
from sam_triton.client import SamClient, ServerUnavailableError
from sam_triton.client.transport.server_key import key_file

from ..helpers import encoder_arrays, prompt_arrays, serve_argv, triton_inputs
from .probes import PROBE_CLICK
from .serve_process import Serve

REQUEST_TIMEOUT_S = 240
STOPPING = (
    "in ensemble 'sam', [request id: <id_unknown>] Server is stopping, scheduler for model has stopped accepting new inference requests"
)


def _direct(url: str, kind: str, seed: int, prompts: int = 8):
    """One request straight to sam_encoder or sam_decoder (what set_image and predict send); its output."""
    rng = np.random.default_rng(seed)
    if kind == "encoder":
        model, arrays, output = (
            "sam_encoder",
            encoder_arrays(image=rng.integers(0, 255, (1, 1024, 1024, 3), dtype=np.uint8)),
            "image_embeddings",
        )
    else:
        arrays = {"image_embeddings": rng.standard_normal((1, 256, 64, 64), dtype=np.float32), **prompt_arrays(prompts, 2)}
        model, output = "sam_decoder", "iou_predictions"
    with grpcclient.InferenceServerClient(url) as raw:
        return raw.infer(model, triton_inputs(arrays), client_timeout=REQUEST_TIMEOUT_S).as_numpy(output)


def _segment(url: str, image):
    """One request through the ensemble; its answer, or the error it raised."""
    try:
        with SamClient(url, transport="grpc", timeout_s=REQUEST_TIMEOUT_S) as client:
            return client.segment(image, **PROBE_CLICK)
    except ServerUnavailableError as exc:
        return exc


def test_sigterm_drains_requests_in_flight_and_exits_0(python_repository, cache_dir, tmp_path, images):
    with Serve(python_repository, cache_dir, tmp_path, "--exit-timeout", "120") as serve:
        done = []
        with ThreadPoolExecutor(16) as pool:
            direct = [pool.submit(_direct, serve.url, kind, seed) for seed, kind in enumerate(["encoder", "decoder"] * 4)]
            ensemble = [pool.submit(_segment, serve.url, images["dog"]) for _ in range(3)]
            for future in direct + ensemble:
                future.add_done_callback(lambda _: done.append(time.monotonic()))
            while not done:  # the server is working on them: the first answer is back
                time.sleep(0.01)
            in_flight = len(direct) + len(ensemble) - len(done)
            start = time.monotonic()
            serve.process.send_signal(15)
            answers = [future.result(timeout=REQUEST_TIMEOUT_S) for future in direct]
            segments = [future.result(timeout=REQUEST_TIMEOUT_S) for future in ensemble]
        assert serve.process.wait(timeout=150) == 0
        stopped_after_s = time.monotonic() - start
    assert in_flight >= 6, f"only {in_flight} requests were in flight at SIGTERM: the test did not test draining"
    assert all(np.all(np.isfinite(a)) for a in answers)  # every direct request answered
    for result in segments:  # an ensemble request is answered, or refused at its decoder step (Triton 2.51 stops every
        if isinstance(result, Exception):  # scheduler at once: the ensemble's next step is a new request)
            assert STOPPING in str(result) and "model 'sam'" in str(result)
        else:
            assert result[0].shape == (3, 534, 800)
    assert "shutting down: draining in-flight requests (at most 120 s)" in serve.output()
    assert stopped_after_s < 120, f"serve took {stopped_after_s:.0f} s to drain"
    assert not key_file(serve.ports["grpc"]).exists()


def test_exit_timeout_bounds_the_drain(python_repository, cache_dir, tmp_path):
    with Serve(python_repository, cache_dir, tmp_path, "--exit-timeout", "1") as serve:
        with ThreadPoolExecutor(6) as pool:  # a backlog of many seconds: 6 requests of 64 prompts
            futures = [pool.submit(_outcome, _direct, serve.url, "decoder", seed, prompts=64) for seed in range(6)]
            time.sleep(2.0)
            start = time.monotonic()
            status = serve.stop(timeout_s=120)
            stopped_after_s = time.monotonic() - start
            outcomes = [future.result(timeout=REQUEST_TIMEOUT_S) for future in futures]
    # Triton gives up after --exit-timeout, and serve then kills it (and its python stubs) at once
    assert stopped_after_s < 1 + 10, f"serve took {stopped_after_s:.0f} s to stop with --exit-timeout 1"
    assert any(isinstance(o, Exception) for o in outcomes), "the backlog was drained within 1 s: nothing was cut off"
    assert status == 1 and "did not finish draining within --exit-timeout 1 s" in serve.output()
    assert "requests still in flight were cut off" in serve.output()


def _outcome(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except Exception as exc:  # refused or cut off by the shutdown: what matters here is the time
        return exc


def test_a_model_that_fails_to_load_stops_serve_with_its_reason(python_repository, cache_dir, tmp_path, capsys):
    broken = tmp_path / "repo"
    shutil.copytree(python_repository, broken, ignore=shutil.ignore_patterns("__pycache__"))
    (broken / "sam_encoder" / "1" / "model.onnx").unlink()
    (broken / "sam_encoder" / "1" / "model.onnx").write_bytes(b"not an onnx file")  # corrupt
    (broken / "sam_decoder" / "1" / "model.onnx").unlink()  # missing
    grpc_port = free_port()
    start = time.monotonic()
    code = main(serve_argv(broken, cache_dir, tmp_path / "log", grpc_port=grpc_port))
    elapsed_s = time.monotonic() - start
    err = capsys.readouterr().err
    assert code == 1
    assert "sam-triton serve: error: tritonserver exited with status 1 before it was ready:" in err
    assert (
        f"model 'sam_encoder' failed to load: Internal: InvalidProtobuf: [ONNXRuntimeError] : 7 : INVALID_PROTOBUF :"
        f" Load model from {broken}/sam_encoder/1/model.onnx failed:Protobuf parsing failed."
    ) in err
    assert (
        f"model 'sam_decoder' failed to load: Internal: NoSuchFile: [ONNXRuntimeError] : 3 : NO_SUCHFILE :"
        f" Load model from {broken}/sam_decoder/1/model.onnx failed"
    ) in err
    assert elapsed_s < 120, f"serve took {elapsed_s:.0f} s to give up"
    assert not key_file(grpc_port).exists()
