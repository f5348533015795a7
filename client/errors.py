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
        super().__init__(f"{argument}: {problem}")


class NoImageSetError(SamTritonError, RuntimeError):
    """``predict`` was called before ``set_image``."""


class ClientClosedError(SamTritonError, RuntimeError):
    """The client was used after ``close()``."""


class ServerError(SamTritonError):
    """Triton answered a request with an error. ``model`` names the model, ``status`` the gRPC code."""

    def __init__(self, message: str, *, model: Optional[str] = None, status: Optional[str] = None) -> None:
        self.model = model
        self.status = status
        where = f"model '{model}'" if model else "server"
        super().__init__(f"{where}: {message}" + (f" [{status}]" if status else ""))


class InvalidRequestError(ServerError):
    """The server rejected the request's inputs (INVALID_ARGUMENT); retrying will not help."""


class ServerUnavailableError(ServerError):
    """The server could not be reached or is not ready (UNAVAILABLE)."""


class ModelNotFoundError(ServerError):
    """The model is not in the server's repository or is not loaded (NOT_FOUND)."""


class RequestTimeoutError(ServerError):
    """The call did not finish within its timeout (DEADLINE_EXCEEDED)."""


_BY_STATUS = {
    "INVALID_ARGUMENT": InvalidRequestError,
    "UNAVAILABLE": ServerUnavailableError,
    "NOT_FOUND": ModelNotFoundError,
    "DEADLINE_EXCEEDED": RequestTimeoutError,
}


def status_name(exc: BaseException) -> Optional[str]:
    """The gRPC status code name of a tritonclient error ("UNAVAILABLE"), or None."""
    status = getattr(exc, "status", None)
    code = status() if callable(status) else None
    if code is None:
        return None
    return str(code).rsplit(".", 1)[-1]


def from_triton(exc: BaseException, *, model: Optional[str] = None) -> ServerError:
    """Wrap a tritonclient ``InferenceServerException`` in the matching error of ours."""
    code = status_name(exc)
    message = exc.message() if callable(getattr(exc, "message", None)) else str(exc)
    cls = _BY_STATUS.get(code or "", ServerError)
    return cls(message or str(exc), model=model, status=code)
