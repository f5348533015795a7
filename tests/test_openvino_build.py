"""The OpenVINO runtimes' repositories: configs, options, refusals and the BF16 check (no server here).

``openvino`` writes python-backend models running OpenVINO (the embedded server); ``openvino-backend``
writes configs for Triton's own openvino backend, which this machine lacks: they are checked by
parsing them as Triton's ModelConfig.
"""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from sam_triton.build.repository.assemble import DEFAULT_ENCODER_NICE, RepositoryOptions, config_files
from sam_triton.build.repository.model_config import label_parameters
from sam_triton.build.repository.openvino_options import OpenVinoOptions, bf16_problem, cpu_capabilities, require_native_bf16
from sam_triton.cli.main import main


def _configs(**options):
    files = config_files(RepositoryOptions(**options))
    return files, {
        model: text_format.Parse(files[f"{model}/config.pbtxt"], model_config_pb2.ModelConfig())
        for model in ("sam_encoder", "sam_decoder", "sam")
    }


def _params(config):
    return {key: value.string_value for key, value in config.parameters.items()}


def test_openvino_runtime_runs_the_encoder_on_openvino_and_the_decoder_on_onnxruntime():
    files, configs = _configs(runtime="openvino", intra_op_threads=2)
    encoder, decoder = configs["sam_encoder"], configs["sam_decoder"]
    assert encoder.backend == decoder.backend == "python"
    assert _params(encoder) == {
        "engine": "openvino",
        "INFERENCE_PRECISION_HINT": "f32",
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": "2",
        "nice": str(DEFAULT_ENCODER_NICE),  # the encoder yields the CPU to clicks
    }
    assert _params(decoder) == {
        "engine": "onnxruntime",
        "intra_op_num_threads": "2",
        "max_prompts": "64",
        "max_points": "16",
        **label_parameters(),
    }
    assert files["sam_encoder/1/model.py"] == files["sam_decoder/1/model.py"]  # one template, two engines
    assert encoder.max_batch_size == decoder.max_batch_size == configs["sam"].max_batch_size == 8


def test_openvino_options_reach_every_openvino_model():
    options = OpenVinoOptions(precision="bf16", performance_hint="throughput", streams=2, cpu_pinning=False)
    _, configs = _configs(runtime="openvino", decoder_engine="openvino", openvino=options)
    for model in ("sam_encoder", "sam_decoder"):
        params = _params(configs[model])
        assert params["engine"] == "openvino" and params["INFERENCE_PRECISION_HINT"] == "bf16"
        assert params["PERFORMANCE_HINT"] == "THROUGHPUT" and params["NUM_STREAMS"] == "2" and params["ENABLE_CPU_PINNING"] == "NO"
        assert "INFERENCE_NUM_THREADS" not in params  # 0: every core


def test_python_runtime_can_run_its_decoder_on_openvino():
    _, configs = _configs(runtime="python", decoder_engine="openvino")
    assert _params(configs["sam_encoder"])["engine"] == "onnxruntime"
    assert _params(configs["sam_decoder"])["engine"] == "openvino"


def test_openvino_backend_configs_use_tritons_openvino_backend_without_triton_batching():
    files, configs = _configs(runtime="openvino-backend", openvino=OpenVinoOptions(precision="bf16", streams=4), intra_op_threads=8)
    encoder, decoder, ensemble = configs["sam_encoder"], configs["sam_decoder"], configs["sam"]
    assert encoder.backend == "openvino" and encoder.default_model_filename == "model.onnx"
    assert _params(encoder) == {"PERFORMANCE_HINT": "LATENCY", "HINT_BF16": "YES", "NUM_STREAMS": "4", "INFERENCE_NUM_THREADS": "8"}
    # The decoder's default engine is ONNX Runtime: here Triton's onnxruntime backend.
    assert decoder.platform == "onnxruntime_onnx" and _params(decoder)["intra_op_thread_count"] == "8"
    # Triton's openvino backend fixes a batching model's batch at max_batch_size: the batch dim is in dims instead.
    for config in (encoder, decoder, ensemble):
        assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
        assert all(tensor.dims[0] == -1 for tensor in [*config.input, *config.output])
    # Triton's own backends run the encoder and decoder; the only python model is the session store's
    assert [path for path in files if path.endswith("model.py")] == ["sam_session/1/model.py"]
    _, configs = _configs(runtime="openvino-backend", decoder_engine="openvino")
    assert configs["sam_decoder"].backend == "openvino" and "HINT_BF16" not in _params(configs["sam_decoder"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--runtime", "openvino", "--precision", "fp16"], "--precision fp16: --runtime openvino offers fp32, bf16"),
        (["--runtime", "python", "--precision", "bf16"], "--precision bf16: --runtime python offers fp32"),
        (["--runtime", "python", "--streams", "2"], "--streams: OpenVINO options apply where a model runs OpenVINO"),
        (["--runtime", "onnxruntime", "--performance-hint", "throughput"], "--performance-hint: OpenVINO options apply"),
        (["--runtime", "openvino-backend", "--no-cpu-pinning"], "--no-cpu-pinning: Triton's openvino backend has no pinning parameter"),
        (["--runtime", "openvino", "--instance-kind", "KIND_GPU"], "OpenVINO runs on the CPU here"),
        (["--runtime", "tensorrt", "--decoder-engine", "onnxruntime"], "--runtime tensorrt builds TensorRT engines of both models"),
        (["--runtime", "openvino", "--streams", "-1"], "streams must be >= 0"),
    ],
)
def test_build_refuses_options_the_runtime_cannot_honor(tmp_path, capsys, argv, message):
    assert main(["build", "--preset", "tiny", "--repository", str(tmp_path / "repo"), *argv]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "repo").exists()


def test_bf16_is_refused_where_the_cpu_lacks_it_with_the_reason():
    # OPTIMIZATION_CAPABILITIES as OpenVINO reports them on a CPU with AVX-512 BF16 or AMX, and on one without.
    assert bf16_problem(capabilities=["BF16", "WINOGRAD", "FP32", "INT8", "BIN", "EXPORT_IMPORT"], device_name="Xeon") is None
    problem = bf16_problem(capabilities=["WINOGRAD", "FP32", "INT8", "BIN", "EXPORT_IMPORT"], device_name="Intel Core i7-8700")
    assert problem.startswith("--precision bf16: this CPU (Intel Core i7-8700) has neither AMX nor AVX-512 BF16")
    assert "use --precision fp32" in problem


def test_this_machines_bf16_check_agrees_with_openvino(tmp_path, capsys):
    cpu = cpu_capabilities()
    if "BF16" in cpu["capabilities"]:
        require_native_bf16()
        return
    with pytest.raises(ValueError, match="has neither AMX nor AVX-512 BF16"):
        require_native_bf16()
    assert main(["build", "--runtime", "openvino", "--precision", "bf16", "--preset", "tiny", "--repository", str(tmp_path / "r")]) == 1
    assert "use --precision fp32" in capsys.readouterr().err


def test_serve_refuses_tritons_openvino_backend_on_the_embedded_server(tmp_path, capsys):
    from sam_triton.build.repository.assemble import write_configs

    write_configs(tmp_path / "repo", RepositoryOptions(runtime="openvino-backend"))
    assert main(["serve", "--repository", str(tmp_path / "repo"), "--cache-dir", str(tmp_path / "cache")]) == 1
    err = capsys.readouterr().err
    assert "embedded tritonserver (python backend only) lacks (sam_decoder: onnxruntime_onnx, sam_encoder: openvino)" in err
    assert "--tritonserver /opt/tritonserver/bin/tritonserver" in err and "build --runtime openvino" in err
