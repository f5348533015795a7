"""``SamClient``: SamPredictor's API over Triton's gRPC protocol, blocking (tritonclient.grpc).

A SAM user switches by changing one line::

    predictor = SamPredictor(sam)           ->   predictor = SamClient("localhost:8001")
    predictor.set_image(image)                    predictor.set_image(image)
    masks, scores, logits = predictor.predict(point_coords=..., point_labels=..., box=...)
"""

from __future__ import annotations

import functools
import threading
from typing import Callable, Concatenate, Dict, Optional, ParamSpec, Tuple, TypeVar

import numpy as np
import tritonclient.grpc as grpcclient

from .client_api import SamClientAPI, as_public_method
from .contract import Limits
from .transport.drivers import run_blocking
from .transport.ops import FlowOf

Params = ParamSpec("Params")
Result = TypeVar("Result")


def blocking(builder: Callable[Concatenate[SamClientAPI, Params], FlowOf[Result]]) -> Callable[Concatenate["SamClient", Params], Result]:
    """A blocking method running the flow ``builder`` makes (same name, signature and docstring)."""

    @functools.wraps(builder)
    def method(self: "SamClient", *args: Params.args, **kwargs: Params.kwargs) -> Result:
        return self._run(builder(self, *args, **kwargs))

    return as_public_method(method, builder, "SamClient")


class SamClient(SamClientAPI):
    """Segment Anything through a Triton server's ``sam_encoder``, ``sam_decoder`` and ``sam`` models.

    ``url``: the gRPC address ("host:port"). ``timeout_s``: the limit of each request (tritonclient
    itself has none). ``connect_timeout_s``: how long the first call (or the first after the
    server was UNAVAILABLE) waits for the server to be ready, retrying with backoff per ``retry``.
    ``transport``: where the image embedding lives between set_image and predict, "auto" (shared
    memory for a loopback url, else gRPC), "shm", "cuda" or "grpc" (see ``sam_triton.client.transport.core``).
    ``limits``: overrides the prompt limits, otherwise read from the decoder's config.
    ``max_regions``: the most shared-memory regions held at once (beyond, tensors go over gRPC).
    ``api_key``: the key of the server's restricted shared-memory API, sent with each region call;
    None reads ``$SAM_TRITON_API_KEY``, else the key file a local ``sam-triton serve`` wrote (see
    ``sam_triton.client.transport.server_key``).

    A remote server (tritonclient's own names): ``ssl=True`` for TLS, with ``root_certificates``
    (a PEM file; None: gRPC's default roots) and, for a client certificate, ``private_key`` and
    ``certificate_chain``; or ``creds``, a ``grpc.ChannelCredentials``. ``headers``: gRPC metadata
    sent with every request (an auth token, the session header a gateway routes on); each call
    also takes ``headers=``, merged over them. ``keepalive_options``: a
    ``tritonclient.grpc.KeepAliveOptions``. ``channel_args``: ("grpc.option", value) pairs added to
    the client's own channel arguments (see ``sam_triton.client.channel_options``).

    The client connects on ``open()``, on ``with``, or on its first call; ``close()`` unregisters
    and frees its shared memory. Safe to share between threads.
    """

    _make_open_lock = staticmethod(threading.Lock)

    set_image = blocking(SamClientAPI._set_image)
    predict = blocking(SamClientAPI._predict)
    predict_batch = blocking(SamClientAPI._predict_batch)
    segment = blocking(SamClientAPI._segment)
    generate = blocking(SamClientAPI._generate)

    def open(self) -> "SamClient":
        """Connect: wait for the server, read the decoder's limits, set up the transport."""
        with self._open_lock:
            if self._core.should_open():
                self._grpc = grpcclient.InferenceServerClient(self.url, **self._core.channel.client_kwargs())
                run_blocking(self._open_flow(), self._grpc)
        return self

    def close(self, *, timeout_s: Optional[float] = None) -> None:
        """Wait up to ``timeout_s`` for calls in flight, unregister and free the shared memory,
        close the channel. Idempotent; the client cannot be used afterwards."""
        run_blocking(self._close_flow(timeout_s), self._grpc)

    @property
    def limits(self) -> Limits:
        """Prompt limits of the served decoder (read from its config on open)."""
        if self._core.limits is None:
            self.open()
        return self._core.known_limits()

    def __enter__(self) -> "SamClient":
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _infer(
        self, model: str, arrays: Dict[str, np.ndarray], output_names: Tuple[str, ...], *, headers: Optional[Dict[str, str]] = None
    ) -> Dict[str, np.ndarray]:
        """One raw inference, past the client-side checks (tests use it to reach the server's)."""
        return self._run(self._core.session(self._core.infer(model, arrays, output_names, self.timeout_s), headers))

    def _run(self, flow: FlowOf[Result]) -> Result:
        if self._core.state == "new":
            self.open()
        return run_blocking(flow, self._grpc)
