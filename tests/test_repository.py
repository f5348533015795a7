"""The model repository: the checked-in layout is exactly what `build` generates, and every
runtime's config parses as Triton's ModelConfig with the contract's tensors and limits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from sam_triton.build.repository.assemble import (
    DEFAULT_ENCODER_NICE,
    RUNTIMES,
    RepositoryOptions,
    assemble,
    config_files,
    write_configs,
)
from sam_triton.build.repository.model_config import config_text
from sam_triton.client import contract
from sam_triton.client.contract import Limits

from .helpers import CHECKED_IN, checked_in_snapshot

ARTIFACTS = (".onnx", ".onnx.data", ".plan")
MODEL_SPECS = {
    contract.ENCODER_MODEL: (contract.ENCODER_INPUTS, contract.ENCODER_OUTPUTS),
    contract.DECODER_MODEL: (contract.DECODER_INPUTS, contract.DECODER_OUTPUTS),
    contract.ENSEMBLE_MODEL: (contract.ENSEMBLE_INPUTS, contract.ENSEMBLE_OUTPUTS),
    contract.SESSION_MODEL: (contract.SESSION_INPUTS, contract.SESSION_OUTPUTS),
}


def test_checked_in_repository_is_what_build_generates():
    on_disk = {
        str(p.relative_to(CHECKED_IN)): p.read_text()
        for p in CHECKED_IN.rglob("*")
        if p.is_file() and not p.name.endswith(ARTIFACTS) and "__pycache__" not in p.parts
    }
    generated = config_files(RepositoryOptions())
    assert sorted(on_disk) == sorted(generated)
    for path, text in generated.items():
        assert on_disk[path] == text, f"model_repository/{path} differs from what `sam-triton build` writes"


def _parse(text: str):
    return text_format.Parse(text, model_config_pb2.ModelConfig())


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_configs_parse_and_follow_the_contract(runtime):
    limits = Limits(max_batch_size=4, max_prompts=32, max_points=8)
    options = RepositoryOptions(runtime=runtime, limits=limits, encoder_instances=2)
    files = config_files(options)
    # Runtimes without Triton batching (Triton's openvino backend) carry the batch dim in dims.
    batching = options.spec.triton_batching
    batch_dim = () if batching else (-1,)
    encoder = _parse(files["sam_encoder/config.pbtxt"])
    decoder = _parse(files["sam_decoder/config.pbtxt"])
    ensemble = _parse(files["sam/config.pbtxt"])
    for config, inputs, outputs in (
        (encoder, contract.ENCODER_INPUTS, contract.ENCODER_OUTPUTS),
        (decoder, contract.DECODER_INPUTS, contract.DECODER_OUTPUTS),
        (ensemble, contract.ENSEMBLE_INPUTS, contract.ENSEMBLE_OUTPUTS),
    ):
        assert config.max_batch_size == (4 if batching else 0)
        got = [(t.name, model_config_pb2.DataType.Name(t.data_type), tuple(t.dims)) for t in config.input]
        assert got == [(s.name, f"TYPE_{s.dtype}", batch_dim + s.dims) for s in inputs]
        got = [(t.name, model_config_pb2.DataType.Name(t.data_type), tuple(t.dims)) for t in config.output]
        assert got == [(s.name, f"TYPE_{s.dtype}", batch_dim + s.dims) for s in outputs]
    assert encoder.instance_group[0].count == 2
    assert decoder.parameters["max_prompts"].string_value == "32"
    assert decoder.parameters["max_points"].string_value == "8"
    assert [s.model_name for s in ensemble.ensemble_scheduling.step] == ["sam_encoder", "sam_decoder"]
    assert (decoder.dynamic_batching.max_queue_delay_microseconds > 0) == batching
    session = _parse(files["sam_session/config.pbtxt"])
    assert session.backend == "python" and session.max_batch_size == 0
    assert [(t.name, t.optional) for t in session.input] == [(s.name, s.optional) for s in contract.SESSION_INPUTS]
    assert [t.name for t in session.output] == [s.name for s in contract.SESSION_OUTPUTS]
    assert session.instance_group[0].count == 1 and session.parameters["max_prompts"].string_value == "32"
    assert session.parameters["embedding_memory"].string_value == ("gpu" if runtime == "tensorrt" else "cpu")
    assert session.parameters["open_workers"].string_value == str(contract.DEFAULT_SESSION_OPEN_WORKERS)
    assert session.parameters["click_workers"].string_value == str(contract.DEFAULT_SESSION_CLICK_WORKERS)
    assert "sam_session/1/model.py" in files
    # The encoder yields the CPU to clicks where it runs in a python stub on the CPU.
    nice = encoder.parameters["nice"].string_value if "nice" in encoder.parameters else None
    assert nice == (str(DEFAULT_ENCODER_NICE) if options.spec.python_model else None)


def test_encoder_priority_and_session_lanes_are_checked():
    assert RepositoryOptions(runtime="python", encoder_nice=0).encoder_priority == 0
    assert RepositoryOptions(runtime="python", instance_kind="KIND_GPU").encoder_priority == 0
    assert RepositoryOptions(runtime="tensorrt").encoder_priority == 0
    with pytest.raises(ValueError, match="encoder nice 20: expected 0"):
        RepositoryOptions(runtime="python", encoder_nice=20)
    with pytest.raises(ValueError, match="--encoder-nice: the encoder runs in tritonserver's own process with --runtime onnxruntime"):
        RepositoryOptions(runtime="onnxruntime", encoder_nice=5)
    with pytest.raises(ValueError, match=r"session workers: 0 for opens \(expected >= 1\)"):
        RepositoryOptions(session_open_workers=0)
    serial = config_files(RepositoryOptions(session_click_workers=0))["sam_session/config.pbtxt"]
    assert _parse(serial).parameters["click_workers"].string_value == "0"


def _every_variant():
    """(name, RepositoryOptions) for every runtime with every option that changes a config's fields."""
    limits = Limits(max_batch_size=4, max_prompts=32, max_points=8)
    for runtime, spec in sorted(RUNTIMES.items()):
        yield f"{runtime}", RepositoryOptions(runtime=runtime)
        yield (
            f"{runtime}-sized",
            RepositoryOptions(
                runtime=runtime, limits=limits, encoder_instances=2, decoder_instances=3, intra_op_threads=2, decoder_queue_delay_us=9
            ),
        )
        if spec.engine == "tensorrt":
            yield f"{runtime}-cuda-graphs", RepositoryOptions(runtime=runtime, decoder_cuda_graphs=True)
        else:
            yield from (
                (f"{runtime}-decoder-{e}", RepositoryOptions(runtime=runtime, decoder_engine=e)) for e in ("onnxruntime", "openvino")
            )


@pytest.mark.parametrize("name, options", list(_every_variant()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_config_is_the_printed_model_config_message(name, options):
    """config.pbtxt is a printed ModelConfig: it parses, and printing the parsed message gives the same
    text (no field the proto does not hold, none lost); the tensors are the contract's."""
    configs = {path: text for path, text in config_files(options).items() if path.endswith("config.pbtxt")}
    assert sorted(configs) == ["sam/config.pbtxt", "sam_decoder/config.pbtxt", "sam_encoder/config.pbtxt", "sam_session/config.pbtxt"]
    for path, text in configs.items():
        message = _parse(text)
        assert config_text(message) == text, f"{name}: {path}"
        assert message.name == path.split("/")[0]
        assert [t.name for t in message.input] == [s.name for s in MODEL_SPECS[message.name][0]]
        assert [t.name for t in message.output] == [s.name for s in MODEL_SPECS[message.name][1]]
    # The python model declares no contract number: the labels it accepts are a parameter (the image size, the image input's dims).
    decoder = _parse(configs["sam_decoder/config.pbtxt"])
    if options.decoder_spec.python_model:
        labels = json.loads(decoder.parameters["point_labels"].string_value)
        assert {int(value): meaning for value, meaning in labels.items()} == contract.LABEL_MEANINGS


def test_server_reports_the_contract(grpc_url):
    with grpcclient.InferenceServerClient(grpc_url) as raw:
        for model in (contract.ENCODER_MODEL, contract.DECODER_MODEL, contract.ENSEMBLE_MODEL):
            assert raw.is_model_ready(model)
            meta = raw.get_model_metadata(model, as_json=True)
            names = [i["name"] for i in meta["inputs"]]
            assert names == [
                s.name
                for s in {
                    contract.ENCODER_MODEL: contract.ENCODER_INPUTS,
                    contract.DECODER_MODEL: contract.DECODER_INPUTS,
                    contract.ENSEMBLE_MODEL: contract.ENSEMBLE_INPUTS,
                }[model]
            ]


def test_unknown_runtime_is_refused():
    with pytest.raises(ValueError, match="runtime 'cuda': expected one of"):
        RepositoryOptions(runtime="cuda")


def _files(repository: Path):
    return sorted(p.relative_to(repository).as_posix() for p in repository.rglob("*") if p.is_file())


# sam_session (its config and model.py) is in every runtime's repository.
CONFIGS = [
    "sam/1/.gitkeep",
    "sam/config.pbtxt",
    "sam_decoder/config.pbtxt",
    "sam_encoder/config.pbtxt",
    "sam_session/1/model.py",
    "sam_session/config.pbtxt",
]
ONNX = ["sam_decoder/1/model.onnx", "sam_encoder/1/model.onnx"]
PYTHON_MODELS = ["sam_decoder/1/model.py", "sam_encoder/1/model.py"]


def test_a_rebuild_for_another_runtime_leaves_only_its_files(tmp_path, tiny_onnx):
    repository = tmp_path / "model_repository"
    (repository / "someone_elses_model" / "1").mkdir(parents=True)
    (repository / "someone_elses_model" / "config.pbtxt").write_text('backend: "python"\n')
    assemble(repository, RepositoryOptions(runtime="python"), onnx_dir=tiny_onnx[0])
    (repository / "sam_encoder" / "1" / "__pycache__").mkdir()
    (repository / "sam_encoder" / "1" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"left by the python backend")
    (repository / "sam_decoder" / "1" / "model.plan").write_bytes(b"an old plan")
    ours = [f for f in _files(repository) if not f.startswith("someone_elses_model/")]
    assert ours == sorted(CONFIGS + ONNX + PYTHON_MODELS + ["sam_decoder/1/model.plan", "sam_encoder/1/__pycache__/model.cpython-311.pyc"])
    for runtime in ("onnxruntime", "openvino-backend"):  # platform / backend runtimes: no model.py, no leftovers
        assemble(repository, RepositoryOptions(runtime=runtime), onnx_dir=tiny_onnx[0])
        assert _files(repository) == sorted(CONFIGS + ONNX + ["someone_elses_model/config.pbtxt"]), runtime
        assert not (repository / "sam_encoder" / "1" / "__pycache__").exists()
        assert (
            config_files(RepositoryOptions(runtime=runtime))["sam_encoder/config.pbtxt"]
            == (repository / "sam_encoder" / "config.pbtxt").read_text()
        )
    write_configs(repository, RepositoryOptions(runtime="tensorrt"))  # before its plans are built: no ONNX graph stays
    assert _files(repository) == sorted(CONFIGS + ["someone_elses_model/config.pbtxt"])
    assemble(repository, RepositoryOptions(runtime="openvino"), onnx_dir=tiny_onnx[0])  # and back to the default
    assert _files(repository) == sorted(CONFIGS + ONNX + PYTHON_MODELS + ["someone_elses_model/config.pbtxt"])
    assert (repository / "someone_elses_model" / "1").is_dir()


def test_build_writes_the_default_repository_in_the_cache_not_the_checkout(tmp_path, cache_dir, tiny_onnx, capsys):
    from sam_triton.cli.main import main

    before = checked_in_snapshot()
    own_cache = tmp_path / "cache"
    assert main(["build", "--preset", "tiny", "--runtime", "python", "--cache-dir", str(own_cache), "--onnx-dir", str(tiny_onnx[0])]) == 0
    assert f"wrote the python model repository at {own_cache / 'model_repository'}" in capsys.readouterr().out
    assert _files(own_cache / "model_repository") == sorted(CONFIGS + ONNX + PYTHON_MODELS)
    assert checked_in_snapshot() == before
    code = main(["serve", "--cache-dir", str(tmp_path / "empty-cache")])
    assert code == 1
    assert (
        f"{tmp_path / 'empty-cache' / 'model_repository'} holds no model (no */config.pbtxt): it does not exist;"
        " write it with `sam-triton build`"
    ) in capsys.readouterr().err
