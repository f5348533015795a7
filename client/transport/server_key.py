"""The key of a server's restricted APIs: where ``sam-triton serve`` leaves it, and how clients send it.

``sam-triton serve`` restricts Triton's shared-memory and model-repository APIs
(``--grpc-restricted-protocol``, ``--http-restricted-api``): a call to them is refused unless it
carries the server's key in the ``sam-triton-key`` header (gRPC metadata
``triton-grpc-protocol-sam-triton-key``, Triton's prefix for restricted-protocol headers). The key
is ``$SAM_TRITON_API_KEY`` when set, else a new random one each time a server starts, written to
a file only its user can read: ``<runtime dir>/grpc-<port>.key``, with the runtime dir
``$XDG_RUNTIME_DIR/sam-triton`` or ``~/.cache/sam-triton/run``. A client of a loopback address
reads it there (a client of another host never does: it would hand a local key to a remote
server).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Dict, Optional, Tuple

from ..errors import InvalidInputError

#: The HTTP header of the key; gRPC clients send it as ``GRPC_HEADER``.
HEADER = "sam-triton-key"
GRPC_HEADER = f"triton-grpc-protocol-{HEADER}"
ENV_VAR = "SAM_TRITON_API_KEY"
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]", "ip6-localhost")


def is_loopback(url: str) -> bool:
    """Whether a gRPC target ("host:port", "[::1]:port", "unix:path") is on this host."""
    if url.startswith("unix:"):
        return True
    host = url.rsplit(":", 1)[0] if url.count(":") == 1 or url.startswith("[") else url
    return host in _LOOPBACK_HOSTS or host.startswith("127.")


def _port(url: str) -> Optional[int]:
    tail = url.rsplit(":", 1)[-1] if ":" in url else ""
    return int(tail) if tail.isdigit() else None


def key_directory() -> Path:
    """Where servers started by this user leave their keys (made private to the user)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) / "sam-triton" if runtime else Path.home() / ".cache" / "sam-triton" / "run"


def key_file(grpc_port: int) -> Path:
    return key_directory() / f"grpc-{int(grpc_port)}.key"


def new_key() -> str:
    """A random key: hex, so it never holds the ',', ':' or '=' Triton's flag syntax uses."""
    return secrets.token_hex(16)


def check_key(key: object, argument: str) -> str:
    """``key`` if it can be a key (Triton's flag syntax forbids ',', ':', '=' and whitespace)."""
    if not isinstance(key, str) or not key or any(c in key for c in ",:= \t\n"):
        shown = f"{type(key).__name__} of {len(key)} characters" if isinstance(key, str) else type(key).__name__
        raise InvalidInputError(
            argument, f"got a {shown}; expected the server's key: a non-empty string without ',', ':', '=' or whitespace"
        )
    return key


def write_key_file(grpc_port: int, key: str) -> Path:
    """Write ``key`` for the server on ``grpc_port``, readable by this user only; returns the path."""
    directory = key_directory()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = key_file(grpc_port)
    scratch = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key)
    os.replace(scratch, path)
    return path


def remove_key_file(grpc_port: int, key: str) -> None:
    """Remove the key file of ``grpc_port`` if it still holds ``key`` (not a later server's)."""
    path = key_file(grpc_port)
    try:
        if path.read_text() == key:
            path.unlink()
    except OSError:
        pass


def resolve_key(url: str, explicit: Optional[str] = None) -> Tuple[Optional[str], str]:
    """(the key to send to the server at ``url``, where it came from): ``explicit``, else
    ``$SAM_TRITON_API_KEY``, else the key file of a loopback url's port, else (None, "no key")."""
    if explicit:
        return explicit, "the key passed as api_key"
    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR], f"the key in ${ENV_VAR}"
    port = _port(url)
    if port is None or not is_loopback(url):
        return None, "no key"
    path = key_file(port)
    try:
        return (path.read_text().strip() or None), f"the key in {path}"
    except OSError:
        return None, f"no key (there is no {path})"


def find_key(url: str) -> Optional[str]:
    """The key to send to the server at ``url`` (see ``resolve_key``), or None."""
    return resolve_key(url)[0]


def grpc_headers(key: Optional[str]) -> Optional[Dict[str, str]]:
    """tritonclient's ``headers=`` argument carrying ``key`` (None: no header)."""
    return {GRPC_HEADER: key} if key else None
