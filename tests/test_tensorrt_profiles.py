"""TensorRT optimization profiles and config.pbtxt come from the same Limits, so they cannot disagree.

The profiles checked here are the ones ``build_engine`` hands to TensorRT (``model_profiles``);
the configs are what ``sam-triton build`` writes, parsed as Triton's ModelConfig.
"""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from sam_triton.build.repository.assemble import RUNTIMES, RepositoryOptions, config_files
from sam_triton.build.tensorrt.engine import EngineOptions, trtexec_command
from sam_triton.build.tensorrt.profiles import model_profiles
from sam_triton.client import contract
from sam_triton.client.contract import DEFAULT_LIMITS, Limits

LIMITS = (
    DEFAULT_LIMITS,
    Limits(max_batch_size=1, max_prompts=1, max_points=2, opt_points=2),
    Limits(max_batch_size=4, max_prompts=32, max_points=8, opt_batch_size=2, opt_prompts=4, opt_points=3),
    Limits(max_batch_size=16, max_prompts=128, max_points=5),
)
AXIS_LIMIT = {"prompts": "max_prompts", "points": "max_points"}


def _config(files, model):
    return text_format.Parse(files[f"{model}/config.pbtxt"], model_config_pb2.ModelConfig())


@pytest.mark.parametrize("limits", LIMITS, ids=lambda lim: f"b{lim.max_batch_size}-p{lim.max_prompts}-n{lim.max_points}")
# Runtimes without Triton batching (Triton's openvino backend) write the batch dim into dims; the
# profiles' batch range applies to the others (tests/test_openvino_build.py checks those configs).
@pytest.mark.parametrize("runtime", sorted(name for name, spec in RUNTIMES.items() if spec.triton_batching))
def test_engine_profiles_match_config_dims(runtime, limits):
    files = config_files(RepositoryOptions(runtime=runtime, limits=limits))
    for model in (contract.ENCODER_MODEL, contract.DECODER_MODEL):
        config = _config(files, model)
        profiles = model_profiles(model, limits)
        assert [p.name for p in profiles] == [t.name for t in config.input]
        params = {k: int(v.string_value) for k, v in config.parameters.items() if k in ("max_prompts", "max_points")}
        for tensor, profile, spec in zip(
            config.input, profiles, contract.DECODER_INPUTS if model == contract.DECODER_MODEL else contract.ENCODER_INPUTS
        ):
            assert len(profile.min) == len(profile.opt) == len(profile.max) == 1 + len(tensor.dims)
            assert (profile.min[0], profile.max[0]) == (1, config.max_batch_size)
            names = iter(spec.axis_names)
            for i, dim in enumerate(tensor.dims, start=1):
                if dim == -1:
                    axis = next(names)
                    assert profile.min[i] == 1 and profile.max[i] == params[AXIS_LIMIT[axis]] == getattr(limits, AXIS_LIMIT[axis])
                    assert profile.min[i] <= profile.opt[i] <= profile.max[i]
                else:
                    assert profile.min[i] == profile.opt[i] == profile.max[i] == dim


@pytest.mark.parametrize("limits", LIMITS, ids=lambda lim: f"b{lim.max_batch_size}-p{lim.max_prompts}-n{lim.max_points}")
def test_warmup_and_cuda_graphs_use_the_profile_opt_shape(limits):
    files = config_files(RepositoryOptions(runtime="tensorrt", limits=limits, decoder_cuda_graphs=True, encoder_instances=2))
    encoder, decoder = _config(files, contract.ENCODER_MODEL), _config(files, contract.DECODER_MODEL)
    assert encoder.platform == decoder.platform == "tensorrt_plan"
    assert {g.kind for g in encoder.instance_group} == {model_config_pb2.ModelInstanceGroup.KIND_GPU}
    assert encoder.instance_group[0].count == 2
    assert 0 < decoder.dynamic_batching.max_queue_delay_microseconds <= 1000
    for config, model in ((encoder, contract.ENCODER_MODEL), (decoder, contract.DECODER_MODEL)):
        opt = {p.name: p.opt for p in model_profiles(model, limits)}
        (warmup,) = config.model_warmup
        assert warmup.batch_size == limits.opt_batch_size
        assert {k: tuple(v.dims) for k, v in warmup.inputs.items()} == {k: v[1:] for k, v in opt.items()}
        assert all(v.zero_data for v in warmup.inputs.values())
    assert encoder.optimization.cuda.graphs is False
    specs = decoder.optimization.cuda.graph_spec
    assert decoder.optimization.cuda.graphs and [s.batch_size for s in specs] == list(range(1, limits.max_batch_size + 1))
    opt = {p.name: p.opt[1:] for p in model_profiles(contract.DECODER_MODEL, limits)}
    for spec in specs:
        assert {k: tuple(v.dim) for k, v in spec.input.items()} == opt


def test_cuda_graphs_are_refused_outside_tensorrt():
    with pytest.raises(ValueError, match="decoder CUDA graphs need --runtime tensorrt"):
        RepositoryOptions(runtime="onnxruntime", decoder_cuda_graphs=True)


def test_trtexec_equivalent_names_the_same_profile(tmp_path):
    command = trtexec_command(
        tmp_path / "sam_decoder.onnx",
        tmp_path / "model.plan",
        model=contract.DECODER_MODEL,
        limits=DEFAULT_LIMITS,
        options=EngineOptions(workspace_mib=4096),
        fp32_layers=["/a/LayerNormalization"],
    )
    assert (
        "--optShapes=image_embeddings:1x256x64x64,point_coords:1x1x2x2,point_labels:1x1x2,mask_input:1x1x1x256x256,has_mask_input:1x1"
        in command
    )
    assert (
        "--maxShapes=image_embeddings:8x256x64x64,point_coords:8x64x16x2,point_labels:8x64x16,mask_input:8x64x1x256x256,has_mask_input:8x64"
        in command
    )
    assert "--fp16" in command and "--precisionConstraints=obey" in command
    assert "--layerPrecisions=/a/LayerNormalization:fp32" in command and "--memPoolSize=workspace:4096M" in command
