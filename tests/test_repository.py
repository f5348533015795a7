"""The model repository: the checked-in layout is exactly what `build` generates, and every
runtime's config parses as Triton's ModelConfig with the contract's tensors and limits."""

from __future__ import annotations

from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from sam_triton.build.repository.assemble import RUNTIMES, RepositoryOptions, config_files
from sam_triton.client import contract
from sam_triton.client.contract import Limits

CHECKED_IN = Path(__file__).resolve().parents[1] / "model_repository"
ARTIFACTS = (".onnx", ".onnx.data", ".plan")


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


def test_server_reports_the_contract(grpc_url):
    with grpcclient.InferenceServerClient(grpc_url) as raw:
        for model in (contract.ENCODER_MODEL, contract.DECODER_MODEL, contract.ENSEMBLE_MODEL):
            assert raw.is_model_ready(model)
            meta = raw.get_model_metadata(model, as_json=True)
            names = [i["name"] for i in meta["inputs"]]
            assert names == [s.name for s in {
                contract.ENCODER_MODEL: contract.ENCODER_INPUTS,
                contract.DECODER_MODEL: contract.DECODER_INPUTS,
                contract.ENSEMBLE_MODEL: contract.ENSEMBLE_INPUTS,
            }[model]]


def test_unknown_runtime_is_refused():
    with pytest.raises(ValueError, match="runtime 'cuda': expected one of"):
        RepositoryOptions(runtime="cuda")
