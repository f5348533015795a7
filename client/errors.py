"""The client's exceptions: one small tree, raised ``from`` the tritonclient error they wrap.

Server errors are classified by gRPC status code (``InferenceServerException.status()``), never
by message text.
"""

from __future__ import annotations

from typing import Optional


class SamTritonError(Exception):
    """Base of every error this library raises."""


class InvalidInputError(SamTritonError, ValueError):
    """An argument was rejected before anything was sent; the message names it and what was expected."""

    def __init__(self, argument: str, problem: str) -> None:
        self.argument = argument
        self.problem = problem
        super().__init__(f"{argument}: {problem}")


class NoImageSetError(SamTritonError, RuntimeError):
    """``predict`` was called before ``set_image``."""


class ClientClosedError(SamTritonError, RuntimeError):
    """The client was used after ``close()``."""


class ClientNotOpenError(SamTritonError, RuntimeError):
    """Something only an open client knows was asked of one not yet open (``await client.open()``)."""


class TransportUnavailableError(SamTritonError, RuntimeError):
    """A transport (``shm`` or ``cuda``) cannot work here; the message says why and what to use instead."""


class ServerError(SamTritonError):
    """Triton answered a request with an error.

    ``model`` names the model, ``status`` the gRPC code, ``request`` what was sent (each input's
    name, dtype and shape, and where it was read from), so the message names the input and Triton's
    own text says what was expected.
    """

    def __init__(self, message: str, *, model: Optional[str] = None, status: Optional[str] = None, request: str = "") -> None:
        self.model = model
        self.status = status
        self.request = request
        self.detail = message  # Triton's own text
        where = f"model '{model}'" if model else "server"
        text = f"{where}: {message}" + (f" [{status}]" if status else "")
        super().__init__(text + (f"; the request was {request}" if request else ""))


class InvalidRequestError(ServerError):
    """The server rejected the request's inputs (INVALID_ARGUMENT); retrying will not help."""


class ServerUnavailableError(ServerError):
    """The server could not be reached or is not ready (UNAVAILABLE)."""


class ModelNotFoundError(ServerError):
    """The model is not in the server's repository or is not loaded (NOT_FOUND)."""


class RequestTimeoutError(ServerError):
    """The call did not finish within its timeout (DEADLINE_EXCEEDED)."""


class SessionNotFoundError(ServerError):
    """Transport "session": the server did not hold the session even right after the client
    re-opened it (a miss twice in a row: a store too small for its load, or replicas that do not
    route the session's ``sam-route`` header to one server)."""


class PreviousMaskLostError(SessionNotFoundError):
    """Transport "session": a refinement with ``mask_input="previous"`` met a lost session. The
    client re-opened the session (the next call works), but the previous mask was the server's and
    went with it, so the refinement is not retried silently without it."""


class SharedMemoryError(ServerError):
    """The server could not register or use one of the client's shared-memory regions.

    System shared memory needs the client and the server on one host with one /dev/shm (in Docker:
    ``--ipc=host``); CUDA shared memory needs a server with a GPU. ``transport="grpc"`` always works.
    """


_BY_STATUS = {
    "INVALID_ARGUMENT": InvalidRequestError,
    "UNAVAILABLE": ServerUnavailableError,
    "NOT_FOUND": ModelNotFoundError,
    "DEADLINE_EXCEEDED": RequestTimeoutError,
}


def server_may_still_run(exc: BaseException) -> bool:
    """Whether a request that ended with ``exc`` may still run on the server, and so still write
    its outputs: a timeout, a lost connection, a cancel (asyncio's CancelledError too), anything
    but the server's own answer. Triton does not stop a request whose client gave up."""
    if isinstance(exc, (RequestTimeoutError, ServerUnavailableError)):
        return True
    if isinstance(exc, ServerError):
        return exc.status == "CANCELLED"
    return True


def status_name(exc: BaseException) -> Optional[str]:
    """The gRPC status code name of a tritonclient error ("UNAVAILABLE"), or None."""
    status = getattr(exc, "status", None)
    code = status() if callable(status) else None
    if code is None:
        return None
    return str(code).rsplit(".", 1)[-1]


def from_triton(exc: BaseException, *, model: Optional[str] = None, request: str = "", shared_memory: bool = False) -> ServerError:
    """Wrap a tritonclient ``InferenceServerException`` in the matching error of ours.

    ``shared_memory`` marks a failed region registration: any code but UNAVAILABLE and
    DEADLINE_EXCEEDED then means the server cannot use the region (``SharedMemoryError``).
    """
    code = status_name(exc)
    message_of = getattr(exc, "message", None)  # InferenceServerException.message(): the server's text alone
    message = message_of() if callable(message_of) else str(exc)
    cls = _BY_STATUS.get(code or "", ServerError)
    message = message or str(exc)
    if shared_memory and cls not in (ServerUnavailableError, RequestTimeoutError):
        cls = SharedMemoryError
        message += (
            " (system shared memory needs the server on this host with the same /dev/shm, in Docker"
            " --ipc=host; CUDA shared memory needs a server with a GPU; transport='grpc' works everywhere)"
        )
    return cls(message, model=model, status=code, request=request)
