"""The sans-IO core's vocabulary: what a flow asks a transport to do, and the retry rule.

A *flow* is a generator that yields ``Rpc``, ``Sleep`` and ``Compute`` operations and receives
each one's result (or has its error thrown in). Everything the clients do (``set_image``, ``predict``,
``generate``...) is written once as a flow; ``SamClient`` and ``AsyncSamClient`` only execute the
operations, with ``tritonclient.grpc`` or ``tritonclient.grpc.aio`` (see ``drivers``).

Retrying: only an *idempotent* call (a read: readiness, model config, shared-memory status) is
retried, and only on UNAVAILABLE, with capped exponential backoff and jitter. An inference or a
shared-memory (un)registration is never retried: its UNAVAILABLE may come after the server
received it, and the gRPC status cannot tell "never sent" from "lost after running". Instead, a
flow that follows an UNAVAILABLE first re-checks readiness (retried) before it sends anything; see
``TransportFlows._reconnect_if_needed`` (``transport.connection``).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Generator, Mapping, Optional, Tuple, TypeVar

from tritonclient.utils import InferenceServerException

from ..errors import from_triton, status_name

#: A flow: yields operations, receives their results, returns a value.
Flow = Generator[Any, Any, Any]
T = TypeVar("T")
#: A flow that returns a ``T``: what the client's method running it returns (``FlowOf[np.ndarray]``).
FlowOf = Generator[Any, Any, T]


@dataclass(frozen=True)
class Rpc:
    """One method call on tritonclient's ``InferenceServerClient`` (identical in grpc and grpc.aio).

    ``idempotent`` calls (reads) may be retried on UNAVAILABLE; ``model`` and ``request`` go into
    the error message; ``shared_memory`` marks a region (un)registration.
    """

    method: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    model: Optional[str] = None
    idempotent: bool = False
    request: str = ""
    shared_memory: bool = False


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds`` (time.sleep or asyncio.sleep, by driver)."""

    seconds: float


@dataclass(frozen=True)
class Compute:
    """Run ``function(*args, **kwargs)``: CPU-heavy work on the client's side (full-resolution
    upsampling, image resizing, the automatic-mask pipeline). The blocking driver calls it in
    place; the asyncio driver runs it in a worker thread (``asyncio.to_thread``), so the event
    loop keeps serving other tasks meanwhile. ``function`` must touch only its arguments."""

    function: Callable[..., Any]
    args: Tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


def compute(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Flow:
    """Sub-flow: ``function(*args, **kwargs)`` as a ``Compute`` op; use ``x = yield from compute(...)``."""
    return (yield Compute(function, args, kwargs))


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Capped exponential backoff with jitter for idempotent calls that met UNAVAILABLE.

    ``attempts`` counts every try (1 disables retries). The n-th wait is
    ``min(max_backoff_s, initial_backoff_s * multiplier**n)`` scaled by a random factor in [0.5, 1].
    """

    attempts: int = 5
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be >= 1, got {self.attempts}")
        if self.initial_backoff_s < 0 or self.max_backoff_s < 0 or self.multiplier < 1:
            raise ValueError("RetryPolicy: backoffs must be >= 0 and multiplier >= 1")

    def backoff_s(self, attempt: int) -> float:
        """The wait before try ``attempt + 1`` (attempt counts from 0)."""
        ceiling = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier**attempt)
        return ceiling * random.uniform(0.5, 1.0)


NO_RETRY = RetryPolicy(attempts=1)


def is_unavailable(exc: BaseException) -> bool:
    return status_name(exc) == "UNAVAILABLE"


def call(rpc: Rpc, retry: RetryPolicy = NO_RETRY) -> Flow:
    """Sub-flow: run ``rpc``, retrying it per ``retry`` if it is idempotent; errors become ours.

    Use as ``result = yield from call(rpc, retry)``.
    """
    attempt = 0
    while True:
        try:
            return (yield rpc)
        except InferenceServerException as exc:
            if rpc.idempotent and is_unavailable(exc) and attempt + 1 < retry.attempts:
                yield Sleep(retry.backoff_s(attempt))
                attempt += 1
                continue
            raise from_triton(exc, model=rpc.model, request=rpc.request, shared_memory=rpc.shared_memory) from exc


def read_rpc(method: str, *, model: Optional[str] = None, timeout_s: float, **kwargs: Any) -> Rpc:
    """An idempotent read (health, config, status), retried on UNAVAILABLE."""
    arguments: Dict[str, Any] = dict(kwargs, client_timeout=timeout_s)
    return Rpc(method, arguments, model=model, idempotent=True)


def with_headers(flow: Flow, headers: Mapping[str, str]) -> Flow:
    """``flow`` with ``headers`` added to the gRPC metadata of every ``Rpc`` it yields (an
    Rpc's own headers, such as the server's key, are merged over them). ``Rpc("close")`` closes
    the channel locally and takes none."""
    if not headers:
        return (yield from flow)
    result: Any = None
    error: Optional[BaseException] = None
    while True:
        try:
            op = flow.throw(error) if error is not None else flow.send(result)
        except StopIteration as stop:
            return stop.value
        if isinstance(op, Rpc) and op.method != "close":
            merged = {**headers, **(op.kwargs.get("headers") or {})}
            op = dataclasses.replace(op, kwargs={**op.kwargs, "headers": merged})
        try:
            result, error = (yield op), None
        except BaseException as exc:  # thrown in by the driver: hand it to the flow
            result, error = None, exc
