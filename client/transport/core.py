"""``SamCore``: the state and flows the sync and async clients share (sans-IO).

It owns the connection state (new, open, closed), the resolved transport, the decoder's limits,
the current image's embedding and the pool of shared-memory regions. Its methods are flows
(generators of ``Rpc``/``Sleep``, see ``ops``); ``SamClient`` runs them with tritonclient.grpc,
``AsyncSamClient`` with tritonclient.grpc.aio. Mutable state changes under one lock that is never
held across IO, so one client may be shared by threads or asyncio tasks.

Transports (where the image embedding lives between ``set_image`` and ``predict``):

- ``"shm"``: in a system shared-memory region registered once; the encoder writes it there and
  every decoder request reads it there; the all-zero ``mask_input`` of prompts without a mask is
  read from a zeroed region, and the decoder writes its logits into a region too: only the
  prompts and the IoU scores cross the socket. Client and server on one host.
- ``"cuda"``: the same with CUDA shared memory, for a server with a GPU on this host.
- ``"grpc"``: the embedding comes back from the encoder and is sent with each decoder request.
- ``"session"``: the image goes up once, compressed, and the embedding stays in the server's
  ``sam_session`` store; a click sends its prompt and gets scores and compact masks (``sessions``).
- ``"auto"`` (default): ``"shm"`` for a loopback address, else ``"session"`` (``"grpc"`` if the
  server has no ``sam_session``); it falls back to ``"grpc"`` with a warning if the server cannot
  map the region.
"""

from __future__ import annotations

import logging
import math
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..contract import (
    DECODER_MODEL,
    ENCODER_MODEL,
    IMAGE_EMBEDDINGS,
    IOU_PREDICTIONS,
    LOW_RES_MASKS,
    LOW_RES_SIZE,
    MASK_INPUT,
    NUM_MASK_OUTPUTS,
    SESSION_MODEL,
    Limits,
)
from ..errors import ClientClosedError, InvalidInputError, NoImageSetError, TransportUnavailableError, server_may_still_run
from ..predictor.prompts import DecoderPrompt
from ..predictor.requests import OUTPUT_NAMES, ImageState, prompt_request
from .channel_options import ChannelOptions, check_headers
from .connection import (
    EMBEDDING_BYTES,
    EMBEDDING_SHAPE,
    LOGITS_BYTES_PER_PROMPT,
    MASK_INPUT_BYTES_PER_PROMPT,
    TransportFlows,
)
from .ops import Flow, RetryPolicy, read_rpc, with_headers
from .region_pool import RegionPool
from .regions import REGION_KINDS, Placed, unique_region_name
from .server_key import check_key, is_loopback
from .sessions import SessionFlows, SessionRef, Upload, resized_upload
from .triton_io import infer_rpc, limits_from_config, read_outputs

log = logging.getLogger(__name__)

TRANSPORTS = ("auto", "shm", "cuda", "grpc", "session")


def check_timeout(value: object, argument: str) -> float:
    """A finite, positive number of seconds."""
    try:
        seconds = float(value)  # type: ignore[arg-type]  # any object a caller passed: float() is the check
    except (TypeError, ValueError):
        raise InvalidInputError(argument, f"got {value!r}; expected a number of seconds") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidInputError(argument, f"got {value!r}; expected a finite number of seconds > 0")
    return seconds


@dataclass(frozen=True)
class Embedded:
    """An image's embedding: its ``ImageState`` and either the 1x256x64x64 float32 ``array``
    (transport "grpc"), where it is ``placed`` in a registered region (shm, cuda), or the
    ``session`` holding it on the server (session)."""

    state: ImageState
    array: Optional[np.ndarray] = None
    placed: Optional[Placed] = None
    session: Optional[SessionRef] = None

    def read(self) -> np.ndarray:
        if self.session is not None:
            raise TransportUnavailableError("with transport='session' the embedding stays on the server; use transport='grpc' to read it")
        if self.array is not None:
            return self.array
        if self.placed is None:
            raise RuntimeError("an Embedded holds its array or where it is placed; this one holds neither")
        return self.placed.read()


class SamCore(TransportFlows, SessionFlows):
    """Options, state and flows of one client; see the module docstring. The connection and
    region flows (``_rpc``, ``_lease``, ``_destroy``...) are in ``TransportFlows``."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float,
        connect_timeout_s: float,
        transport: str,
        retry: RetryPolicy,
        limits: Optional[Limits],
        cuda_device: int,
        max_regions: int,
        api_key: Optional[str],
        channel: Optional[ChannelOptions] = None,
        session_logits: bool = False,
    ) -> None:
        if transport not in TRANSPORTS:
            raise InvalidInputError("transport", f"got {transport!r}; expected one of {', '.join(TRANSPORTS)}")
        if not isinstance(max_regions, int) or max_regions < 1:
            raise InvalidInputError(
                "max_regions", f"got {max_regions!r}; expected an integer >= 1 (3 let a click keep everything in shared memory)"
            )
        self.url = url
        self.timeout_s = check_timeout(timeout_s, "timeout_s")
        self.connect_timeout_s = check_timeout(connect_timeout_s, "connect_timeout_s")
        self.requested_transport = transport
        self.transport: Optional[str] = None  # resolved by open()
        self.retry = retry
        self.limits = limits
        self.cuda_device = cuda_device
        self.max_regions = max_regions
        # None: $SAM_TRITON_API_KEY or the key file of a local `sam-triton serve` (server_key.find_key)
        self.api_key = None if api_key is None else check_key(api_key, "api_key")
        self.channel = channel or ChannelOptions()  # TLS, keepalive, channel arguments, headers of every call
        self.state = "new"
        self.pool: Optional[RegionPool] = None
        self._prefix = unique_region_name() + "_"
        self._lock = threading.Lock()
        self._current: Optional[Embedded] = None
        self._in_flight = 0
        self._needs_probe = False
        self._zeros: Optional[Any] = None  # a held region of zeros: mask_input of prompts without one
        self._zeros_pending = False
        self.session_logits = bool(session_logits)  # transport "session": predict's low-res logits come back
        self.reopens = 0  # transport "session": sessions re-opened after the server lost them
        self.sessions_to_close: list = []

    # -- lifecycle ---------------------------------------------------------------------------
    def timeout(self, timeout_s: Optional[float]) -> float:
        return self.timeout_s if timeout_s is None else check_timeout(timeout_s, "timeout_s")

    def open(self) -> Flow:
        """Wait for the server (retried until ``connect_timeout_s``), read the decoder's limits,
        resolve the transport and register a first region (so a server that cannot map it fails
        here, or makes "auto" fall back to "grpc")."""
        if not self.should_open():
            return
        yield from self._probe_ready()
        if self.limits is None:
            config = yield from self._rpc(
                read_rpc("get_model_config", model=DECODER_MODEL, timeout_s=self.timeout_s, model_name=DECODER_MODEL, as_json=True)
            )
            self.limits = limits_from_config(config.get("config", config))
        try:
            yield from self._resolve_transport()
        except BaseException:
            if self.pool is not None:
                self.pool.destroy_local()
            self.pool, self.transport = None, None
            raise
        self.state = "open"
        log.debug("client of %s open: transport %s, limits %s", self.url, self.transport, self.limits)

    def _resolve_transport(self) -> Flow:
        transport = self.requested_transport
        if transport == "auto":
            transport = "shm" if is_loopback(self.url) else "session"
        if transport == "session" and not (yield from self._serves_sessions()):
            reason = f"the server at {self.url} does not serve {SESSION_MODEL} (a repository built before sessions?)"
            if self.requested_transport != "auto":
                raise TransportUnavailableError(f"transport='session': {reason}; use transport='grpc' or rebuild the repository")
            log.warning("%s; using transport='grpc'", reason)
            transport = "grpc"
        if transport in REGION_KINDS:
            kind = REGION_KINDS[transport]
            self.pool = RegionPool(
                lambda size: kind(size, device_id=self.cuda_device, prefix=self._prefix),
                max_regions=self.max_regions,
                max_idle=max(1, self.max_regions // 2),
            )
            weakref.finalize(self, self.pool.destroy_local)  # no /dev/shm leak if close() is never called
        self.transport = transport
        if self.pool is not None:
            yield from self._lease_and_release_probe()

    def _serves_sessions(self) -> Flow:
        ready = yield from self._rpc(read_rpc("is_model_ready", model=SESSION_MODEL, timeout_s=self.timeout_s, model_name=SESSION_MODEL))
        return bool(ready)

    def should_open(self) -> bool:
        """True while new; False once open; ClientClosedError once closing or closed."""
        if self.state in ("closing", "closed"):
            raise ClientClosedError("this client is closed; create a new one")
        return self.state == "new"

    def begin_close(self) -> bool:
        """Refuse new calls from now on; False if the client was already closing or closed."""
        with self._lock:
            if self.state in ("closing", "closed"):
                return False
            self.state = "closing"
            return True

    def close(self, deadline: float) -> Flow:
        """Forget the image, unregister and free every idle region (call after in-flight calls
        drained; a region still busy is freed when its call ends); wait until ``deadline``
        (``time.monotonic()``) for the server to let go of quarantined regions."""
        self.reset_image()
        if self.transport == "session":
            yield from self.close_forgotten(self.timeout_s)
        if self._zeros is not None and self.pool is not None:
            self.pool.release(self._zeros)
        try:
            if self.pool is not None:
                for region in self.pool.close():
                    yield from self._destroy(region, self.timeout_s)
                yield from self._drain_quarantine(deadline)
        finally:
            self.state = "closed"

    def headed(self, flow: Flow, headers: Optional[Mapping[str, str]] = None) -> Flow:
        """``flow`` with the client's ``headers`` and then this call's on each of its RPCs."""
        return with_headers(flow, {**self.channel.headers, **check_headers(headers)})

    def session(self, flow: Flow, headers: Optional[Mapping[str, str]] = None) -> Flow:
        """Run one public call's ``flow`` with the client's and the call's ``headers``."""
        return self.headed(self._session(flow), headers)

    def _session(self, flow: Flow) -> Flow:
        """Refuse ``flow`` unless open, count it in flight, and free surplus regions afterwards."""
        with self._lock:
            if self.state != "open":
                raise ClientClosedError("this client is closed; create a new one")
            self._in_flight += 1
        try:
            result = yield from flow
        finally:
            with self._lock:
                self._in_flight -= 1
        if self.sessions_to_close and self.state == "open":  # the last call on a replaced image's session ended
            yield from self.close_forgotten(self.timeout_s)
        if self.pool is not None:
            if self.state == "closed":  # a call that outlived close(): the channel is gone
                for region in self.pool.surplus() + self.pool.take_quarantined():
                    log.warning("freeing shared-memory region %s after close(); the server may still list it", region.name)
                    self.pool.retire(region)
                    region.destroy()
            else:
                for region in self.pool.surplus():
                    yield from self._destroy(region, self.timeout_s)
                yield from self._retire_quarantined(self.timeout_s)
        return result

    @property
    def in_flight(self) -> int:
        return self._in_flight

    # -- the current image -------------------------------------------------------------------
    def set_current(self, embedded: Embedded) -> None:
        with self._lock:
            old, self._current = self._current, embedded
        self.release(old)
        self.forget_session(old)

    def reset_image(self) -> None:
        with self._lock:
            old, self._current = self._current, None
        self.release(old)
        self.forget_session(old)

    def forget_session(self, embedded: Optional[Embedded]) -> None:
        """An image let go of: its session is closed on the server (``close_forgotten``) at the end
        of the call that let it go, or of the last call still using it."""
        if embedded is not None and embedded.session is not None:
            with self._lock:
                embedded.session.forgotten = True
                self._close_when_unused(embedded.session)

    def _close_when_unused(self, ref: SessionRef) -> None:
        """Queue a forgotten session for closing once nobody holds it (call with the lock held)."""
        if ref.forgotten and ref.holders == 0 and all(queued is not ref for queued in self.sessions_to_close):
            self.sessions_to_close.append(ref)

    @property
    def current(self) -> Optional[Embedded]:
        return self._current

    def hold_current(self) -> Embedded:
        """The current image, held (its region cannot be reused) until ``release``."""
        with self._lock:
            current = self._current
            if current is None:
                raise NoImageSetError("An image must be set with .set_image(...) before mask prediction.")
            if current.placed is not None and self.pool is not None:
                self.pool.retain(current.placed.region)
            if current.session is not None:
                current.session.holders += 1
            return current

    def release(self, embedded: Optional[Embedded]) -> None:
        """Let go of one hold on an image: its region may be reused, its session closed if forgotten."""
        if embedded is None:
            return
        if embedded.placed is not None and self.pool is not None:
            self.pool.release(embedded.placed.region)
        if embedded.session is not None:
            with self._lock:
                embedded.session.holders -= 1
                self._close_when_unused(embedded.session)

    # -- model calls -------------------------------------------------------------------------
    def end_lease(self, region: Any, error: Optional[BaseException]) -> None:
        """Give back a region the server wrote outputs into; after an ``error`` with which the
        request may still run there (a timeout, a cancel), quarantine it instead: a late write
        must not land in the next call's tensors."""
        if error is not None and server_may_still_run(error):
            log.warning(
                "quarantining shared-memory region %s: its request ended with %s and may still write into it",
                region.name,
                type(error).__name__,
            )
            self._regions.quarantine(region)
        else:
            self._regions.release(region)

    def embed(self, state: Optional[ImageState], timeout_s: float, upload: Optional[Upload] = None) -> Flow:
        """Run sam_encoder on a prepared image; returns an ``Embedded`` (held: ``release`` it).

        Transport "session": opens a session from ``upload`` (default: the state's resized image)."""
        if self.transport == "session":
            if upload is None:
                if state is None:
                    raise ValueError("embed: a state or an upload is needed")
                height, width = state.input_size
                upload = resized_upload(state.encoder_inputs["image"][0, :height, :width], state.original_size)
            ref, original_size, input_size = yield from self.open_session(upload, timeout_s)
            return Embedded(ImageState(original_size, input_size, {}), session=ref)
        if state is None:
            raise ValueError("embed: a state is needed without transport 'session'")
        region = yield from self._lease(EMBEDDING_BYTES, timeout_s)
        placed = None if region is None else Placed(region, EMBEDDING_SHAPE, "float32")
        try:
            outputs = yield from self.infer(
                ENCODER_MODEL,
                state.encoder_inputs,
                (IMAGE_EMBEDDINGS.name,),
                timeout_s,
                shm_outputs={IMAGE_EMBEDDINGS.name: placed} if placed else None,
                read=placed is None,
            )
        except BaseException as exc:
            if region is not None:
                self.end_lease(region, exc)
            raise
        if placed is not None:
            return Embedded(state, placed=placed)
        return Embedded(state, array=outputs[IMAGE_EMBEDDINGS.name])

    def decode(self, embedded: Embedded, prompts: Sequence[DecoderPrompt], timeout_s: float) -> Flow:
        """Run sam_decoder on P prompts of one held embedding; returns (iou Px4, logits Px4x256x256)."""
        if embedded.session is not None:
            outputs = yield from self.session_predict(embedded.session, prompts, timeout_s, multimask_output=None, masks=False, logits=True)
            return outputs[IOU_PREDICTIONS.name], outputs[LOW_RES_MASKS.name]
        count = len(prompts)
        zeros = None  # the shared all-zero mask_input region, when every prompt goes without a mask
        if not any(prompt.has_mask_input for prompt in prompts):
            zeros = yield from self._zero_masks(timeout_s)
            if zeros is not None and zeros.byte_size < count * MASK_INPUT_BYTES_PER_PROMPT:
                zeros = None
        arrays = prompt_request(prompts, mask_input=zeros is None)
        shm_inputs = {}
        if embedded.placed is not None:
            shm_inputs[IMAGE_EMBEDDINGS.name] = embedded.placed
        else:
            arrays = {IMAGE_EMBEDDINGS.name: embedded.read(), **arrays}
        if zeros is not None:
            shm_inputs[MASK_INPUT.name] = Placed(zeros, (1, count, 1, LOW_RES_SIZE, LOW_RES_SIZE), "float32")
        region = yield from self._lease(count * LOGITS_BYTES_PER_PROMPT, timeout_s)
        shm_outputs = None
        if region is not None:
            shm_outputs = {LOW_RES_MASKS.name: Placed(region, (1, count, NUM_MASK_OUTPUTS, LOW_RES_SIZE, LOW_RES_SIZE), "float32")}
        try:
            outputs = yield from self.infer(DECODER_MODEL, arrays, OUTPUT_NAMES, timeout_s, shm_inputs=shm_inputs, shm_outputs=shm_outputs)
        except BaseException as exc:
            if region is not None:
                self.end_lease(region, exc)
            raise
        if region is not None:
            self.end_lease(region, None)
        return outputs[IOU_PREDICTIONS.name][0], outputs[LOW_RES_MASKS.name][0]

    def infer(
        self,
        model: str,
        arrays: Dict[str, np.ndarray],
        output_names: Tuple[str, ...],
        timeout_s: float,
        *,
        shm_inputs: Optional[Dict[str, Placed]] = None,
        shm_outputs: Optional[Dict[str, Placed]] = None,
        read: bool = True,
    ) -> Flow:
        """One inference (never retried); returns its outputs as arrays when ``read``."""
        rpc = infer_rpc(model, arrays, output_names, timeout_s=timeout_s, shm_inputs=shm_inputs, shm_outputs=shm_outputs)
        result = yield from self._rpc(rpc)
        return read_outputs(result, output_names, shm_outputs) if read else {}
