"""Triton python-backend BLS model ``sam_session``: embed an image once, click on it many times.

Written by `sam-triton build` into every runtime's repository as sam_session/1/model.py. It calls
``sam_encoder`` and ``sam_decoder`` of the same repository through BLS, so each runtime's engines
do the work (TensorRT plans on a GPU, OpenVINO or ONNX Runtime on a CPU), and keeps each session's
embedding in its store (``sam_triton.build.repository.session_store``). One request is one
operation, named by the BYTES input ``op`` (README "Sessions"):

- ``open``: ``image_file`` (a JPEG/PNG/WebP file; with ``original_size`` when it holds SAM's
  resized image of that photo) -> ``session_id``, ``original_size``, ``input_size``.
- ``predict``: ``session_id``, ``point_coords``/``point_labels`` (resized frame, as sam_decoder),
  optional ``mask_input``/``has_mask_input`` or ``use_previous_mask``, ``multimask_output``,
  ``return_masks``, ``return_logits`` -> ``iou_predictions`` and full-size ``masks`` (each the
  smaller of COCO RLE and bit-packed, ``sam_triton.client.mask_codec``), ``low_res_masks`` if asked.
- ``close``: ``session_id`` -> ``session_id``.

Opens and clicks run on lanes of their own (worker threads, ``open_workers`` and ``click_workers``
in config.pbtxt): execute() reads a request's inputs, hands it to its lane and returns at once, and
the lane answers through the request's response sender, so a click never waits behind an open that
is still encoding, while the store stays one (one instance, one process). ``click_workers`` 0 runs
every operation inside execute(), one at a time.

It imports sam_triton (the contract, SAM's numpy postprocess, the mask codec, the store and the
upload decoder), so the python backend's environment needs the sam-triton package: the embedded
server runs this interpreter's; the Docker image installs it in its venv. Bad input gets a Triton
error naming the input; an unknown or expired session id gets NOT_FOUND naming it; the model never
raises out of execute(), so the server stays READY.
"""

import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import triton_python_backend_utils as pb_utils

from sam_triton.build.repository.session_image import UploadError, decode_upload
from sam_triton.build.repository.session_store import SessionStore, StoreFullError
from sam_triton.client import contract
from sam_triton.client.mask_codec import encode_mask
from sam_triton.client.predictor.transforms import postprocess_masks_transposed

SESSION_ID = re.compile(r"^[0-9a-f]{%d}$" % (2 * contract.SESSION_ID_BYTES))
LABELS = tuple(float(value) for value in sorted(contract.LABEL_MEANINGS))
EMBEDDING_BYTES = 4 * contract.EMBED_DIM * contract.EMBED_SIZE * contract.EMBED_SIZE
MASK_THRESHOLD = 0.0  # Sam.mask_threshold


class RequestError(ValueError):
    """Bad input; the message goes back to the client as INVALID_ARG."""


class SessionMissing(LookupError):
    """An unknown, closed, evicted or expired session id; goes back as NOT_FOUND."""


def _parameter(config, key, default):
    entry = config.get("parameters", {}).get(key)
    return entry["string_value"] if entry and entry.get("string_value", "") != "" else default


def _inputs(request):
    """Input name -> a numpy copy of it: a lane reads them after execute() has returned."""
    return {tensor.name(): np.array(tensor.as_numpy(), copy=True) for tensor in request.inputs()}


def _input(inputs, name, required=False):
    value = inputs.get(name)
    if value is None and required:
        raise RequestError(f"input '{name}': missing; expected it with this op")
    return value


def _flag(inputs, name, default):
    value = _input(inputs, name)
    return default if value is None else bool(value.reshape(-1)[0])


def _text(value):
    return value.reshape(-1)[0].decode("utf-8", "replace") if isinstance(value.reshape(-1)[0], bytes) else str(value.reshape(-1)[0])


def _bytes_tensor(name, values):
    return pb_utils.Tensor(name, np.array(values, dtype=np.object_))


class Metrics:
    """Store figures on Triton's /metrics (pb_utils.MetricFamily): sessions and bytes held (gauges),
    hits, misses and evictions (counters, incremented by what changed since the last update)."""

    COUNTERS = ("hits", "misses", "evictions")

    def __init__(self, model_name):
        labels = {"model": model_name}
        gauge, counter = pb_utils.MetricFamily.GAUGE, pb_utils.MetricFamily.COUNTER
        # The families must outlive their metrics (the backend refuses a metric whose family is gone).
        self.families = {
            "sessions": pb_utils.MetricFamily("sam_session_sessions", "Sessions held by sam_session", gauge),
            "bytes": pb_utils.MetricFamily("sam_session_bytes", "Bytes held by sam_session's store", gauge),
            **{
                name: pb_utils.MetricFamily(f"sam_session_{name}_total", f"sam_session store lookups: {name}", counter)
                for name in self.COUNTERS
            },
        }
        self.sessions = self.families["sessions"].Metric(labels=labels)
        self.bytes = self.families["bytes"].Metric(labels=labels)
        self.counters = {name: self.families[name].Metric(labels=labels) for name in self.COUNTERS}
        self.seen = dict.fromkeys(self.COUNTERS, 0)

    def close(self):
        """Metrics first, then their families (the backend's order)."""
        self.sessions = self.bytes = None
        self.counters = {}
        self.families = {}

    def update(self, store):
        self.sessions.set(len(store))
        self.bytes.set(store.bytes_held)
        for name, metric in self.counters.items():
            value = getattr(store, name)
            if value > self.seen[name]:
                metric.increment(value - self.seen[name])
                self.seen[name] = value


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.model_name = config["name"]
        self.store = SessionStore(
            capacity_bytes=int(_parameter(config, "store_bytes", str(contract.DEFAULT_STORE_BYTES))),
            idle_ttl_s=float(_parameter(config, "idle_ttl_s", str(contract.DEFAULT_IDLE_TTL_S))),
        )
        self.max_pixels = int(_parameter(config, "max_image_pixels", str(contract.DEFAULT_MAX_IMAGE_PIXELS)))
        self.max_prompts = int(_parameter(config, "max_prompts", str(contract.DEFAULT_LIMITS.max_prompts)))
        self.max_points = int(_parameter(config, "max_points", str(contract.DEFAULT_LIMITS.max_points)))
        # "gpu" on a GPU runtime: the encoder's output stays in GPU memory (see _keep_embedding).
        self.embedding_memory = _parameter(config, "embedding_memory", "cpu")
        self.metrics = Metrics(self.model_name)
        self.metrics.update(self.store)
        self.operations = {contract.OP_OPEN: self._open, contract.OP_PREDICT: self._predict, contract.OP_CLOSE: self._close}
        self.metrics_lock = threading.Lock()
        open_workers = int(_parameter(config, "open_workers", str(contract.DEFAULT_SESSION_OPEN_WORKERS)))
        click_workers = int(_parameter(config, "click_workers", str(contract.DEFAULT_SESSION_CLICK_WORKERS)))
        self.lanes = None
        if click_workers > 0:
            self.lanes = {
                "open": ThreadPoolExecutor(open_workers, thread_name_prefix="sam_session_open"),
                "click": ThreadPoolExecutor(click_workers, thread_name_prefix="sam_session_click"),
            }

    # -- BLS ---------------------------------------------------------------------------------
    def _infer(self, model, inputs, outputs, gpu_outputs=False):
        kwargs = {}
        if gpu_outputs:
            kwargs["preferred_memory"] = pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_GPU, 0)
        request = pb_utils.InferenceRequest(model_name=model, inputs=inputs, requested_output_names=list(outputs), **kwargs)
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"{model} failed: {response.error().message()}")
        return [pb_utils.get_output_tensor_by_name(response, name) for name in outputs]

    def _keep_embedding(self, tensor):
        """The encoder's output as the store keeps it: (embedding, bytes).

        On a CPU runtime the output lies in the stub's shared memory, reused once the response is
        gone: copy it (4 MiB, about a millisecond) into a numpy array of our own. On a GPU runtime
        (``embedding_memory`` "gpu", asked for with preferred_memory) it lies in GPU memory that
        this Tensor object owns: keep the object itself, so the embedding never crosses PCIe,
        and hand it to the decoder by DLPack (``_embedding_input``), zero-copy. The store charges
        the same 4 MiB either way; on a GPU they are GPU memory, so size ``store_bytes`` to the
        GPU's free memory. (Not run here: this machine has no GPU.)
        """
        if tensor.is_cpu():
            return np.array(tensor.as_numpy(), copy=True), EMBEDDING_BYTES
        return tensor, EMBEDDING_BYTES

    @staticmethod
    def _embedding_input(kept):
        name = contract.IMAGE_EMBEDDINGS.name
        if isinstance(kept, np.ndarray):
            return pb_utils.Tensor(name, kept)
        return pb_utils.Tensor.from_dlpack(name, kept.to_dlpack())

    # -- operations --------------------------------------------------------------------------
    def _session_id(self, inputs):
        session_id = _text(_input(inputs, "session_id", required=True))
        if not SESSION_ID.match(session_id):
            raise RequestError(
                f"input 'session_id': {session_id[:40]!r} is not a session id; expected the"
                f" {2 * contract.SESSION_ID_BYTES} hex digits open returned"
            )
        return session_id

    def _session(self, inputs):
        """(id, session) of a request's session_id; SessionMissing if the store no longer holds it."""
        session_id = self._session_id(inputs)
        session = self.store.get(session_id)
        if session is None:
            raise SessionMissing(
                f"session '{session_id}' is unknown or expired (closed, evicted from the store, idle for more than"
                f" {self.store.idle_ttl_s:g} s, or the server restarted); open the image again"
            )
        return session_id, session

    def _open(self, inputs):
        data = _input(inputs, "image_file", required=True).reshape(-1)
        if len(data) != 1:
            raise RequestError(f"input 'image_file': {len(data)} elements; expected one file")
        original = _input(inputs, "original_size")
        try:
            prepared = decode_upload(
                bytes(data[0]), max_pixels=self.max_pixels, original_size=None if original is None else tuple(original.reshape(-1)[:2])
            )
        except UploadError as exc:
            raise RequestError(str(exc)) from exc
        encoder_inputs = [
            pb_utils.Tensor(contract.IMAGE.name, prepared.image[None]),
            pb_utils.Tensor(contract.INPUT_SIZE.name, prepared.input_size[None]),
        ]
        (output,) = self._infer(contract.ENCODER_MODEL, encoder_inputs, [contract.IMAGE_EMBEDDINGS.name], self.embedding_memory == "gpu")
        embedding, nbytes = self._keep_embedding(output)
        input_size = tuple(int(v) for v in prepared.input_size)
        try:
            session_id = self.store.open(embedding, nbytes, prepared.original_size, input_size)
        except StoreFullError as exc:
            raise RequestError(f"store_bytes: {exc}") from exc
        return [
            _bytes_tensor("session_id", [session_id.encode()]),
            pb_utils.Tensor("original_size", np.array(prepared.original_size, np.int32)),
            pb_utils.Tensor("input_size", np.array(input_size, np.int32)),
        ]

    def _prompts(self, inputs, session):
        coords = _input(inputs, "point_coords", required=True)
        labels = _input(inputs, "point_labels", required=True)
        prompts, points = coords.shape[:2]
        if labels.shape != (prompts, points):
            raise RequestError(f"input 'point_labels': shape {list(labels.shape)}; expected {[prompts, points]} as point_coords")
        if not 1 <= prompts <= self.max_prompts or not 1 <= points <= self.max_points:
            raise RequestError(
                f"input 'point_coords': {prompts} prompts of {points} points; expected 1..{self.max_prompts} prompts"
                f" of 1..{self.max_points} points"
            )
        if not (np.all(np.isfinite(coords)) and np.all(np.isin(labels, LABELS))):
            raise RequestError(
                "input 'point_coords'/'point_labels': expected finite coordinates and labels "
                + ", ".join(f"{value} ({meaning})" for value, meaning in sorted(contract.LABEL_MEANINGS.items()))
            )
        height, width = session.input_size
        real = labels != -1
        x, y = coords[..., 0][real], coords[..., 1][real]
        if np.any(x < 0) or np.any(y < 0) or np.any(x > width) or np.any(y > height):
            raise RequestError(
                f"input 'point_coords': points outside the resized image; expected x in [0, {width}] and y in [0, {height}]"
                " (the 1024 frame of this session's image)"
            )
        return coords.astype(np.float32), labels.astype(np.float32)

    def _mask_inputs(self, inputs, session, prompts):
        if _flag(inputs, "use_previous_mask", False):
            if session.previous_logits is None:
                raise RequestError("input 'use_previous_mask': this session has no previous mask; predict once without it first")
            return np.repeat(session.previous_logits[None], prompts, axis=0), np.ones(prompts, np.float32)
        mask_input = _input(inputs, "mask_input")
        if mask_input is None:
            return np.zeros((prompts, 1, contract.LOW_RES_SIZE, contract.LOW_RES_SIZE), np.float32), np.zeros(prompts, np.float32)
        has_mask = _input(inputs, "has_mask_input", required=True)
        if mask_input.shape[0] != prompts or has_mask.shape != (prompts,):
            raise RequestError(f"input 'mask_input'/'has_mask_input': expected {prompts} prompts as point_coords")
        if not np.all(np.isfinite(mask_input)) or not np.all(np.isin(has_mask, (0.0, 1.0))):
            raise RequestError("input 'mask_input'/'has_mask_input': expected finite logits and has_mask_input 0 or 1")
        return mask_input, has_mask

    def _predict(self, inputs):
        session_id, session = self._session(inputs)
        coords, labels = self._prompts(inputs, session)
        mask_input, has_mask = self._mask_inputs(inputs, session, len(coords))
        decoder_inputs = [
            self._embedding_input(session.embedding),
            pb_utils.Tensor(contract.POINT_COORDS.name, coords[None]),
            pb_utils.Tensor(contract.POINT_LABELS.name, labels[None]),
            pb_utils.Tensor(contract.MASK_INPUT.name, np.ascontiguousarray(mask_input, np.float32)[None]),
            pb_utils.Tensor(contract.HAS_MASK_INPUT.name, np.ascontiguousarray(has_mask, np.float32)[None]),
        ]
        iou, low_res = (
            t.as_numpy()[0] for t in self._infer(contract.DECODER_MODEL, decoder_inputs, [o.name for o in contract.DECODER_OUTPUTS])
        )
        multimask = _input(inputs, "multimask_output")
        if multimask is not None:
            chosen = slice(1, None) if bool(multimask.reshape(-1)[0]) else slice(0, 1)
            iou, low_res = iou[:, chosen], low_res[:, chosen]
        iou, low_res = np.ascontiguousarray(iou), np.ascontiguousarray(low_res)
        # Only one prompt's best mask is kept: the slot the store charged for (SAM's refinement recipe).
        session.previous_logits = np.array(low_res[0, int(np.argmax(iou[0]))][None]) if len(iou) == 1 else None
        outputs = [pb_utils.Tensor("iou_predictions", iou)]
        if _flag(inputs, "return_masks", True):
            # Column-major (WxH) logits: COCO RLE runs down the columns, so mask.T needs no copy to encode.
            full = postprocess_masks_transposed(low_res.reshape(-1, *low_res.shape[-2:]), session.input_size, session.original_size)
            encoded = [encode_mask((mask > MASK_THRESHOLD).T) for mask in full]
            outputs.append(_bytes_tensor("masks", np.array(encoded, dtype=np.object_).reshape(iou.shape)))
        if _flag(inputs, "return_logits", False):
            outputs.append(pb_utils.Tensor("low_res_masks", low_res))
        self.store.touch(session_id)  # in use until now: the idle TTL counts from here
        return outputs

    def _close(self, inputs):
        session_id = self._session_id(inputs)
        if not self.store.close(session_id):
            raise SessionMissing(f"session '{session_id}' is unknown or expired; nothing to close")
        return [_bytes_tensor("session_id", [session_id.encode()])]

    # -- Triton ------------------------------------------------------------------------------
    @staticmethod
    def _error(message, code):
        code = getattr(pb_utils.TritonError, code, None)
        error = pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)
        return pb_utils.InferenceResponse(output_tensors=[], error=error)

    def _respond(self, inputs):
        """One operation's response, or its error: never raises, so the server stays READY."""
        try:
            if isinstance(inputs, RequestError):
                raise inputs
            op = _text(_input(inputs, "op", required=True))
            operation = self.operations.get(op)
            if operation is None:
                raise RequestError(f"input 'op': {op[:40]!r}; expected one of {list(contract.SESSION_OPS)}")
            return pb_utils.InferenceResponse(output_tensors=operation(inputs))
        except RequestError as exc:
            return self._error(str(exc), "INVALID_ARG")
        except SessionMissing as exc:
            return self._error(str(exc), "NOT_FOUND")
        except Exception as exc:  # never let a request take the stub down
            return self._error(f"{self.model_name} failed: {type(exc).__name__}: {exc}", "INTERNAL")

    def _update_metrics(self):
        with self.metrics_lock:
            self.metrics.update(self.store)

    def _lane(self, inputs):
        """The open lane for an open, the click lane for the rest (a bad op is answered there too)."""
        op = inputs.get("op") if isinstance(inputs, dict) else None
        is_open = op is not None and op.size == 1 and _text(op) == contract.OP_OPEN
        assert self.lanes is not None  # execute() hands requests to lanes only when there are some
        return self.lanes["open" if is_open else "click"]

    def _answer(self, inputs, sender):
        """A lane's work: the response, through the request's sender (one response, FINAL)."""
        if sender.is_cancelled():
            response = self._error(f"{self.model_name}: the request was cancelled before it ran", "CANCELLED")
        else:
            response = self._respond(inputs)
        try:
            sender.send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except Exception as exc:  # the client went away; nothing left to answer
            pb_utils.Logger.log_warn(f"{self.model_name}: a response could not be sent: {exc}")
        self._update_metrics()

    def execute(self, requests):
        """With lanes: each request to its lane, and None back to Triton at once, so the instance
        takes the next request (a click) while an open still runs. A non-decoupled python model may
        answer this way: one response per request, sent with the FINAL flag by its response sender.
        Without lanes (click_workers 0): the responses, in turn."""
        if self.lanes is None:
            responses = [self._respond(self._read(request)) for request in requests]
            self._update_metrics()
            return responses
        for request in requests:
            inputs = self._read(request)
            self._lane(inputs).submit(self._answer, inputs, request.get_response_sender())
        return None

    @staticmethod
    def _read(request):
        """A request's inputs, or the RequestError saying why they cannot be read (``_respond`` answers it)."""
        try:
            return _inputs(request)
        except Exception as exc:
            return RequestError(f"the request's inputs cannot be read: {type(exc).__name__}: {exc}")

    def finalize(self):
        """Triton unloads a model once its requests are answered; the lanes are idle by then."""
        for lane in (self.lanes or {}).values():
            lane.shutdown(wait=True)
        self.store = None
        self.metrics.close()
