"""The `sam-triton` command line, called through main(argv) and as a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from sam_triton.build.server.tritonserver import free_port
from sam_triton.cli.main import main

from .helpers import IMAGES_DIR, serve_argv


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("export", "build", "serve", "segment", "demo", "perf", "soak"):
        assert command in out


def test_export_writes_graphs_and_manifest(tmp_path, capsys):
    assert main(["export", "--preset", "tiny", "--seed", "5", "--out", str(tmp_path), "--image", str(IMAGES_DIR / "dog.jpg")]) == 0
    assert (tmp_path / "sam_encoder.onnx").is_file() and (tmp_path / "sam_decoder.onnx").is_file()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["weights"] == "preset:tiny:seed5" and manifest["check"]["image"].endswith("dog.jpg")
    assert "ONNX Runtime vs SamPredictor" in capsys.readouterr().out


@pytest.mark.skipif(__import__("importlib").util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_build_tensorrt_without_tensorrt_fails_fast(tmp_path, capsys):
    start = time.monotonic()
    assert main(["build", "--runtime", "tensorrt", "--preset", "tiny", "--repository", str(tmp_path / "repo")]) == 1
    err = capsys.readouterr().err
    assert "TensorRT is not installed" in err and "nvcr.io/nvidia/tritonserver" in err and "pypi.nvidia.com" in err
    assert time.monotonic() - start < 10 and not (tmp_path / "repo").exists()


def test_build_onnxruntime_repository(tmp_path, tiny_onnx):
    repo = tmp_path / "repo"
    assert (
        main(
            [
                "build",
                "--runtime",
                "onnxruntime",
                "--preset",
                "tiny",
                "--repository",
                str(repo),
                "--onnx-dir",
                str(tiny_onnx[0]),
                "--threads",
                "2",
                "--max-prompts",
                "16",
            ]
        )
        == 0
    )
    config = (repo / "sam_decoder" / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in config and '"max_prompts"' in config and 'string_value: "16"' in config
    assert 'key: "intra_op_thread_count"' in config
    assert (repo / "sam_encoder" / "1" / "model.onnx").is_file() and not (repo / "sam_encoder" / "1" / "model.py").exists()


def test_segment_writes_masks_overlay_and_scores(grpc_url, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "segment",
            str(IMAGES_DIR / "dog.jpg"),
            "--point",
            "400,250",
            "--point",
            "100,100,0",
            "--box",
            "200,100,600,500",
            "--url",
            grpc_url,
            "--out",
            str(out),
            "--single-mask",
        ]
    )
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["mask_0.png", "overlay.png", "scores.json"]
    printed = capsys.readouterr().out
    assert "mask 0: predicted IoU" in printed and "overlay:" in printed
    code = main(["segment", str(IMAGES_DIR / "dog.jpg"), "--point", "400,250", "--url", grpc_url, "--out", str(out), "--ensemble"])
    assert code == 0 and len(json.loads((out / "scores.json").read_text())["scores"]) == 3


def test_segment_rejects_a_bad_point(grpc_url, tmp_path, capsys):
    code = main(["segment", str(IMAGES_DIR / "dog.jpg"), "--point", "5000,10", "--url", grpc_url, "--out", str(tmp_path)])
    assert code == 1
    assert "point_coords: has coordinates outside the image" in capsys.readouterr().err


def test_serve_stops_cleanly_on_sigterm(python_repository, cache_dir, tmp_path):
    grpc_port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sam_triton.cli.main",
            *serve_argv(python_repository, cache_dir, tmp_path / "server.log", grpc_port=grpc_port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = process.stdout.readline()
        while line and "serving" not in line:
            line = process.stdout.readline()
        assert f"127.0.0.1:{grpc_port}" in line
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)


def test_serve_exits_nonzero_naming_a_model_that_fails_to_load(python_repository, cache_dir, tmp_path, capsys):
    broken = tmp_path / "repo"
    for path in python_repository.rglob("*"):
        if path.is_file():
            target = broken / path.relative_to(python_repository)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    (broken / "sam_decoder" / "1" / "model.onnx").write_bytes(b"not an onnx file")
    code = main(serve_argv(broken, cache_dir, tmp_path / "log"))
    assert code == 1
    err = capsys.readouterr().err
    assert "sam_decoder" in err and "tritonserver exited" in err


def test_client_imports_no_torch_or_tensorrt():
    code = (
        "import sys, sam_triton.client, sam_triton.cli.segment; print(sorted(m for m in ('torch', 'tensorrt', 'onnx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
