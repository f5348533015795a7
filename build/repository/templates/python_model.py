"""Triton python-backend model: runs this version directory's model.onnx (or model.xml) with ONNX Runtime or OpenVINO.

Written by `sam-triton build` (runtimes ``python`` and ``openvino``) into both sam_encoder/1/ and
sam_decoder/1/; it reads everything model-specific from config.pbtxt, so one file serves both
models and both engines, and declares no number of the tensor contract (client/contract.py): the
image size comes from the ``image`` input's dims, the point labels from the ``point_labels`` parameter. The config parameter ``engine`` picks the engine (``onnxruntime``, the
default, or ``openvino``); the engine's settings are parameters too (ONNX Runtime's
``intra_op_num_threads``; OpenVINO's own property names such as ``INFERENCE_PRECISION_HINT``,
``PERFORMANCE_HINT``, ``NUM_STREAMS``, ``INFERENCE_NUM_THREADS``, ``ENABLE_CPU_PINNING``). It needs
numpy and the chosen engine's package only, so the repository also runs under any tritonserver
whose python backend can import them.

Bad requests get a Triton error naming the input and what was expected; the model never raises
out of execute(), so the stub keeps serving.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

# Triton itself checks dtypes and dims against config.pbtxt; _check_values checks what only the
# values can fail, against rules read from the config (see _value_rules): none is declared here.
# The OpenVINO CPU properties a config may set, passed to compile_model as they are written.
OPENVINO_PROPERTIES = ("INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS", "ENABLE_CPU_PINNING")


class RequestError(ValueError):
    """A request's input broke the contract; the message goes back to the client."""


def _parameter(config, key, default):
    entry = config.get("parameters", {}).get(key)
    return entry["string_value"] if entry and entry.get("string_value", "") != "" else default


def _log(level, message):
    logger = getattr(pb_utils, "Logger", None)
    if logger is not None:
        getattr(logger, level)(message)


def _value_rules(config):
    """The contract's value rules, from this model's config: the image size from the ``image``
    input's dims (H, W, 3 after any batch dim), the point labels (value -> meaning) from the
    ``point_labels`` parameter; a rule whose input this model does not take is None."""
    inputs = {i["name"]: [int(d) for d in i["dims"]] for i in config["input"]}
    labels = json.loads(_parameter(config, "point_labels", "null"))
    if "point_labels" in inputs and not labels:
        raise ValueError(f"{config['name']}: parameter 'point_labels' is missing; the repository writer puts it in config.pbtxt")
    return {
        "image_size": inputs["image"][-3] if "image" in inputs else None,
        "point_labels": {float(value): meaning for value, meaning in labels.items()} if labels else None,
    }


def _check_size(name, array, limits):
    """Raise RequestError if an input's prompt (P) or point (N) count is out of bounds; reads the
    shape only, so an oversized request is refused before any of its values is looked at."""
    if name == "point_labels":
        prompts, points = array.shape[1], array.shape[2]
        if prompts > limits["max_prompts"]:
            raise RequestError(f"input 'point_labels': {prompts} prompts; at most {limits['max_prompts']} per request")
        if points > limits["max_points"]:
            raise RequestError(f"input 'point_labels': {points} points per prompt; at most {limits['max_points']}")
        if prompts < 1 or points < 1:
            raise RequestError(f"input 'point_labels': shape {list(array.shape)}; expected at least 1 prompt of at least 1 point")


def _check_values(name, array, rules):
    """Raise RequestError if an input's values break the contract (array has the batch dim)."""
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise RequestError(f"input '{name}': contains NaN or infinity; expected finite values")
    if name == "input_size":
        size = rules["image_size"]
        if np.any(array < 1) or np.any(array > size):
            raise RequestError(
                f"input 'input_size': got {array.reshape(-1, 2).tolist()}; expected (h, w) each in [1, {size}]"
                " (the resized image before padding)"
            )
    elif name == "point_labels":
        labels = rules["point_labels"]
        bad = ~np.isin(array, list(labels))
        if np.any(bad):
            named = [f"{int(value)} ({meaning})" for value, meaning in sorted(labels.items())]
            raise RequestError(
                f"input 'point_labels': got values {sorted(set(array[bad].tolist()))[:5]}; expected {', '.join(named[:-1])} or {named[-1]}"
            )
    elif name == "has_mask_input" and not np.all(np.isin(array, (0.0, 1.0))):
        raise RequestError("input 'has_mask_input': expected 0 or 1 per prompt")


def _check_consistent(arrays):
    """The decoder's prompt inputs must agree on P (prompts) and N (points)."""
    if "point_coords" not in arrays:
        return
    batch, prompts, points = arrays["point_coords"].shape[:3]
    expected = {
        "point_labels": (batch, prompts, points),
        "mask_input": (batch, prompts),
        "has_mask_input": (batch, prompts),
    }
    for name, shape in expected.items():
        got = arrays[name].shape[: len(shape)]
        if got != shape:
            raise RequestError(
                f"input '{name}': leading dims {list(got)} do not match point_coords {list(shape)}; expected the same"
                " prompts (P) and points (N) in point_coords, point_labels, mask_input and has_mask_input"
            )


class OnnxRuntimeEngine:
    """model.onnx in an ONNX Runtime CPU session; ``run(feed)`` returns the outputs in config order."""

    def __init__(self, path, config, output_names):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(_parameter(config, "intra_op_num_threads", "0"))
        options.inter_op_num_threads = int(_parameter(config, "inter_op_num_threads", "0"))
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.output_names = output_names
        self.description = f"ONNX Runtime {ort.__version__}, FP32"

    def run(self, feed):
        return self.session.run(self.output_names, feed)


class OpenVinoEngine:
    """model.onnx compiled by OpenVINO for the CPU; ``run(feed)`` returns the outputs in config order.

    BF16 asked for on a CPU without native BF16 (AMX or AVX-512 BF16) runs FP32 and says so in the
    server log. With NUM_STREAMS > 1 a batch is split across the streams and run concurrently.
    """

    def __init__(self, path, config, output_names):
        import openvino as ov

        core = ov.Core()
        properties = {key: _parameter(config, key, "") for key in OPENVINO_PROPERTIES}
        properties = {key: value for key, value in properties.items() if value not in ("", "0")}
        precision = properties.setdefault("INFERENCE_PRECISION_HINT", "f32")  # OpenVINO's own default may be BF16
        capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if precision == "bf16" and "BF16" not in capabilities:
            properties["INFERENCE_PRECISION_HINT"] = "f32"
            _log(
                "log_warn",
                f"{config['name']}: BF16 asked for, but this CPU ({core.get_property('CPU', 'FULL_DEVICE_NAME')})"
                f" has neither AMX nor AVX-512 BF16 (OpenVINO capabilities {list(capabilities)}): running FP32",
            )
        self.compiled = core.compile_model(core.read_model(path), "CPU", properties)
        self.outputs = [self.compiled.output(name) for name in output_names]
        streams = int(self.compiled.get_property("NUM_STREAMS"))
        self.requests = [self.compiled.create_infer_request() for _ in range(max(streams, 1))]
        self.precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        self.description = (
            f"OpenVINO {ov.__version__}, inference precision {self.precision}, {streams} stream(s),"
            f" {self.compiled.get_property('INFERENCE_NUM_THREADS')} thread(s), {os.path.basename(path)}"
        )
        self._warm_up(config)

    def _warm_up(self, config):
        """One zero-filled request of batch 1 (variable dims 1): the first client does not pay for OpenVINO's set-up."""
        batch = [1] if int(config.get("max_batch_size", 0)) > 0 else []
        self.run(
            {
                i["name"]: np.zeros(batch + [max(int(d), 1) for d in i["dims"]], pb_utils.triton_string_to_numpy(i["data_type"]))
                for i in config["input"]
            }
        )

    def run(self, feed):
        batch = len(next(iter(feed.values())))
        parts = min(len(self.requests), batch)
        if parts == 1:
            self.requests[0].infer(feed)
            return [self.requests[0].get_tensor(output).data.copy() for output in self.outputs]
        bounds = np.linspace(0, batch, parts + 1).astype(int)
        for request, start, stop in zip(self.requests, bounds[:-1], bounds[1:]):
            request.start_async({name: array[start:stop] for name, array in feed.items()})
        for request in self.requests[:parts]:
            request.wait()
        return [np.concatenate([r.get_tensor(output).data for r in self.requests[:parts]]) for output in self.outputs]


ENGINES: "dict[str, type[OnnxRuntimeEngine] | type[OpenVinoEngine]]" = {"onnxruntime": OnnxRuntimeEngine, "openvino": OpenVinoEngine}


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.model_name = config["name"]
        self.input_names = [i["name"] for i in config["input"]]
        self.output_names = [o["name"] for o in config["output"]]
        self.limits = {
            "max_prompts": int(_parameter(config, "max_prompts", "1000000")),
            "max_points": int(_parameter(config, "max_points", "1000000")),
        }
        self.rules = _value_rules(config)
        engine = _parameter(config, "engine", "onnxruntime")
        if engine not in ENGINES:
            raise ValueError(f"{self.model_name}: parameter 'engine' is {engine!r}; expected one of {sorted(ENGINES)}")
        # Parameter ``nice``: this stub's CPU priority (the encoder's, so that a click's decoder and
        # postprocess preempt an encode on a shared CPU). Linux keeps a nice value per thread: set
        # before the engine starts its threads, which inherit it; the stub's health thread, started
        # before initialize, keeps the server's.
        nice = int(_parameter(config, "nice", "0"))
        if nice:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        # An INT8 encoder is OpenVINO IR (model.xml + model.bin, NNCF's quantized model); else the ONNX graph.
        path = os.path.join(version_dir, "model.xml")
        if engine != "openvino" or not os.path.isfile(path):
            path = os.path.join(version_dir, "model.onnx")
        self.engine = ENGINES[engine](path, config, self.output_names)
        _log("log_info", f"{self.model_name}: {self.engine.description}")

    def _read(self, request):
        arrays = {}
        for name in self.input_names:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise RequestError(f"input '{name}': missing; expected inputs {self.input_names}")
            arrays[name] = tensor.as_numpy()
            _check_size(name, arrays[name], self.limits)
        _check_consistent(arrays)
        for name, array in arrays.items():
            _check_values(name, array, self.rules)
        return arrays

    def _error(self, message, invalid_argument=True):
        code = getattr(pb_utils.TritonError, "INVALID_ARG" if invalid_argument else "INTERNAL", None)
        error = pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)
        return pb_utils.InferenceResponse(output_tensors=[], error=error)

    def execute(self, requests):
        responses = [None] * len(requests)
        groups: dict[tuple, list] = {}  # requests of equal shapes run as one batch
        for index, request in enumerate(requests):
            try:
                arrays = self._read(request)
            except RequestError as exc:
                responses[index] = self._error(str(exc))
                continue
            except Exception as exc:  # never let a request take the stub down
                responses[index] = self._error(f"could not read the request: {exc}")
                continue
            key = tuple(arrays[n].shape[1:] for n in self.input_names)
            groups.setdefault(key, []).append((index, arrays))
        for members in groups.values():
            self._run_group(members, responses)
        return responses

    def _run_group(self, members, responses):
        feed = {n: np.concatenate([arrays[n] for _, arrays in members]) for n in self.input_names}
        try:
            outputs = self.engine.run(feed)
        except Exception as exc:
            for index, _ in members:
                responses[index] = self._error(f"{self.model_name} failed: {exc}", invalid_argument=False)
            return
        start = 0
        for index, arrays in members:
            stop = start + arrays[self.input_names[0]].shape[0]
            tensors = [pb_utils.Tensor(n, np.ascontiguousarray(o[start:stop])) for n, o in zip(self.output_names, outputs)]
            responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
            start = stop

    def finalize(self):
        del self.engine  # Triton unloads the model: free the engine's session now
