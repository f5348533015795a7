"""`serve` (and the Docker entrypoint) refuse TensorRT plans whose metadata does not match the
repository's config, the weights, or the machine, before Triton loads anything.

The repositories here are real `build --runtime tensorrt` layouts (configs from `write_configs`,
metadata as `build_tensorrt_repository` writes it) without engines: the check reads only
config.pbtxt and model.plan.json, never the plan's bytes. Where a test needs a plan to exist, an
empty placeholder file stands in; nothing loads it.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path

import pytest

from sam_triton.build.repository.assemble import RepositoryOptions, write_configs
from sam_triton.build.repository.stale_plans import StalePlanError, ensure_plans_fresh
from sam_triton.build.tensorrt.engine_metadata import EngineMetadata, RuntimeIdentity
from sam_triton.build.tensorrt.profiles import model_profiles, profiles_as_dict
from sam_triton.cli.main import main
from sam_triton.client import contract
from sam_triton.client.contract import Limits

from .helpers import serve_argv

BUILT = Limits(max_batch_size=8, max_prompts=64, max_points=16)
H100 = RuntimeIdentity(tensorrt_version="10.8.0.43", gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0")
REBUILD = "sam-triton build --runtime tensorrt --checkpoint sam_vit_h_4b8939.pth --repository repo --max-batch-size 8"


def _metadata(model: str, limits: Limits = BUILT, weights: str = "sha256:aaaa", runtime: RuntimeIdentity = H100) -> EngineMetadata:
    return EngineMetadata(
        model=model,
        tensorrt_version=runtime.tensorrt_version,
        gpu_name=runtime.gpu_name,
        compute_capability=runtime.compute_capability,
        precision="fp16",
        fp32_groups=[],
        fp32_layers=0,
        profiles=profiles_as_dict(model_profiles(model, limits)),
        limits=asdict(limits),
        weights=weights,
        onnx_sha256="0" * 64,
        rebuild_command=REBUILD,
    )


def _repository(root: Path, *, config_limits: Limits = BUILT, plans: bool = True, **metadata) -> Path:
    repo = root / "repo"
    write_configs(repo, RepositoryOptions(runtime="tensorrt", limits=config_limits))
    for model in (contract.ENCODER_MODEL, contract.DECODER_MODEL):
        version_dir = repo / model / "1"
        version_dir.mkdir(parents=True, exist_ok=True)
        _metadata(model, **metadata.get(model, {})).write(version_dir)
        if plans:
            (version_dir / "model.plan").write_bytes(b"")  # placeholder: the check never reads plan bytes
    return repo


def _refusal(repo: Path, **kwargs) -> str:
    with pytest.raises(StalePlanError) as info:
        ensure_plans_fresh(repo, **kwargs)
    message = str(info.value)
    assert message.startswith(f"refusing to serve {repo}") and f"Rebuild the plans on this machine with:\n  {REBUILD}" in message
    return message


def test_matching_plans_pass(tmp_path):
    repo = _repository(tmp_path)
    assert ensure_plans_fresh(repo, expected_weights="sha256:aaaa", runtime=H100) == ["sam_decoder", "sam_encoder"]


def test_config_edited_after_the_build_is_refused(tmp_path):
    repo = _repository(tmp_path, config_limits=Limits(max_batch_size=16, max_prompts=32, max_points=16))
    message = _refusal(repo)
    assert "sam_encoder/1/model.plan is stale" in message and "sam_decoder/1/model.plan is stale" in message
    assert "config.pbtxt has max_batch_size 16 but the plan was built for 8" in message
    assert "config.pbtxt has max_prompts 32 but the plan was built for 64" in message
    assert (
        "input 'point_coords': the plan's profile is [1, 1, 1, 2]..[8, 64, 16, 2], the config needs [1, 1, 1, 2]..[16, 32, 16, 2]"
        in message
    )


def test_weights_mismatch_is_refused(tmp_path):
    repo = _repository(tmp_path, sam_decoder={"weights": "sha256:bbbb"})
    assert "hold different weights: ['sha256:aaaa', 'sha256:bbbb']" in _refusal(repo)
    repo = _repository(tmp_path / "other")
    assert "the plan holds weights sha256:aaaa, not sha256:cccc" in _refusal(repo, expected_weights="sha256:cccc")


def test_other_tensorrt_or_gpu_is_refused(tmp_path):
    repo = _repository(tmp_path)
    l4 = RuntimeIdentity(tensorrt_version="10.9.0.34", gpu_name="NVIDIA L4", compute_capability="8.9")
    message = _refusal(repo, runtime=l4)
    assert "the plan was built by TensorRT 10.8.0.43; this machine has TensorRT 10.9.0.34" in message
    assert "the plan was built for NVIDIA H100 80GB HBM3 (compute capability 9.0); this machine has NVIDIA L4 (8.9)" in message


def test_missing_plan_or_metadata_is_refused(tmp_path):
    repo = _repository(tmp_path, plans=False)
    assert "there is no model.plan" in _refusal(repo)
    (repo / "sam_encoder" / "1" / "model.plan.json").unlink()
    with pytest.raises(StalePlanError, match=re.escape("there is no model.plan.json beside the plan")):
        ensure_plans_fresh(repo)


def test_repositories_without_plans_are_untouched(tmp_path):
    write_configs(tmp_path / "cpu", RepositoryOptions(runtime="python"))
    assert ensure_plans_fresh(tmp_path / "cpu") == []


def test_serve_refuses_a_stale_plan_before_starting_triton(tmp_path, capsys):
    repo = _repository(tmp_path, config_limits=Limits(max_batch_size=4))
    log_file = tmp_path / "tritonserver.log"
    code = main(serve_argv(repo, tmp_path / "cache", log_file))
    assert code == 1
    err = capsys.readouterr().err
    assert "sam-triton serve: error: refusing to serve" in err and "config.pbtxt has max_batch_size 4 but the plan was built for 8" in err
    assert REBUILD in err
    assert not log_file.exists()  # tritonserver never started


def test_serve_needs_a_tritonserver_with_the_tensorrt_backend(tmp_path, capsys):
    repo = _repository(tmp_path)
    code = main(["serve", "--repository", str(repo), "--cache-dir", str(tmp_path / "cache"), "--log-file", str(tmp_path / "log")])
    assert code == 1
    assert "which the embedded tritonserver (python backend only) cannot load: pass --tritonserver" in capsys.readouterr().err
    assert not (tmp_path / "log").exists()


@pytest.mark.parametrize("runtime", ["python", "onnxruntime", "tensorrt"])
def test_the_stale_check_reads_configs_as_triton_does(runtime):
    """The check's own reader of config.pbtxt agrees with Triton's protobuf parser on every limit."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from sam_triton.build.repository.assemble import config_files
    from sam_triton.build.repository.stale_plans import config_limits

    for limits in (BUILT, Limits(max_batch_size=3, max_prompts=5, max_points=7)):
        files = config_files(RepositoryOptions(runtime=runtime, limits=limits))
        text = files["sam_decoder/config.pbtxt"]
        parsed = text_format.Parse(text, model_config_pb2.ModelConfig())
        read = config_limits(text, opt_from=BUILT)
        assert read.max_batch_size == parsed.max_batch_size == limits.max_batch_size
        assert read.max_prompts == int(parsed.parameters["max_prompts"].string_value) == limits.max_prompts
        assert read.max_points == int(parsed.parameters["max_points"].string_value) == limits.max_points
