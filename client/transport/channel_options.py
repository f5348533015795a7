"""How a client reaches a remote server: TLS, keepalive, channel arguments and per-call headers.

The options carry tritonclient's own names (``tritonclient.grpc.InferenceServerClient``: ``ssl``,
``root_certificates``, ``private_key``, ``certificate_chain``, ``creds``, ``keepalive_options``,
``channel_args``; each call's ``headers``), checked here so that a mistake is an
``InvalidInputError`` naming the option instead of a plaintext channel the user believed secure
(tritonclient silently ignores the certificate files unless ``ssl`` is set).

Unlike tritonclient, where ``channel_args`` replaces every default, ours are added to the
client's own (message-size limits grown for the 3 MB image and the 1 MB-per-prompt logits, and the
keepalive of ``keepalive_options`` when given); a key given in both takes ``channel_args``' value.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..errors import InvalidInputError

# Grown gRPC message limits: one encoder request carries a 3 MB image, a decoder reply with many
# prompts carries P x 4 x 256 x 256 float32 logits (1 MB per prompt).
MESSAGE_SIZE_ARGS = (
    ("grpc.max_send_message_length", 512 * 1024 * 1024),
    ("grpc.max_receive_message_length", 512 * 1024 * 1024),
)
#: gRPC's own reconnect backoff grows to 120 s by default: a channel that failed to connect while a
#: server restarted could then refuse calls for minutes after it is back. Ours stays at most 2 s,
#: like the client's retries (ops.RetryPolicy), so a call after a restart waits seconds, not minutes.
RECONNECT_ARGS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
)
#: gRPC metadata keys: lowercase letters, digits, '-', '_' and '.' (tritonclient lowercases them).
_HEADER_KEY = re.compile(r"^[0-9a-z_.-]+$")
_RESERVED_PREFIXES = ("grpc-", ":")


def check_headers(headers: object, argument: str = "headers") -> Dict[str, str]:
    """``headers`` as gRPC metadata (keys lowercased), or InvalidInputError naming ``argument``."""
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise InvalidInputError(argument, f"got {type(headers).__name__}; expected a dict of header name -> str value")
    checked = {}
    for key, value in headers.items():
        name = key.lower() if isinstance(key, str) else key
        if not isinstance(name, str) or not _HEADER_KEY.match(name) or name.startswith(_RESERVED_PREFIXES) or name.endswith("-bin"):
            raise InvalidInputError(
                f"{argument}[{key!r}]",
                "expected a header name of letters, digits, '-', '_' and '.' (not starting with 'grpc-', not a binary '-bin' header)",
            )
        if not isinstance(value, str) or not value.isprintable() or not value.isascii():
            raise InvalidInputError(f"{argument}[{key!r}]", f"got {type(value).__name__} {value!r}; expected a printable ASCII str")
        checked[name] = value
    return checked


def _readable_file(value: object, argument: str) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise InvalidInputError(argument, f"got {type(value).__name__}; expected the path of a PEM file")
    path = Path(value)
    if not path.is_file() or not os.access(path, os.R_OK):
        raise InvalidInputError(argument, f"{str(path)!r} is not a readable file; expected the path of a PEM file")
    return str(path)


@dataclass(frozen=True)
class ChannelOptions:
    """The channel and metadata options of one client (see ``SamClient`` for each one's meaning)."""

    ssl: bool = False
    root_certificates: Optional[str] = None
    private_key: Optional[str] = None
    certificate_chain: Optional[str] = None
    creds: Any = None
    keepalive_options: Any = None
    channel_args: Optional[Sequence[Tuple[str, Any]]] = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.ssl, bool):
            raise InvalidInputError("ssl", f"got {self.ssl!r}; expected True or False")
        for name in ("root_certificates", "private_key", "certificate_chain"):
            set_(self, name, _readable_file(getattr(self, name), name))
            if getattr(self, name) is not None and not self.ssl:
                raise InvalidInputError(
                    name, "is used only with ssl=True (tritonclient would silently open a plaintext channel): pass ssl=True, or creds="
                )
        if (self.private_key is None) != (self.certificate_chain is None):
            raise InvalidInputError(
                "private_key" if self.private_key is None else "certificate_chain",
                "a client certificate needs both private_key and certificate_chain",
            )
        if self.creds is not None:
            import grpc

            if not isinstance(self.creds, grpc.ChannelCredentials):
                raise InvalidInputError(
                    "creds", f"got {type(self.creds).__name__}; expected grpc.ChannelCredentials (e.g. grpc.ssl_channel_credentials(...))"
                )
            if self.ssl:
                raise InvalidInputError("creds", "give either creds or ssl=True with certificate files, not both")
        if self.keepalive_options is not None and not all(
            hasattr(self.keepalive_options, name)
            for name in ("keepalive_time_ms", "keepalive_timeout_ms", "keepalive_permit_without_calls", "http2_max_pings_without_data")
        ):
            raise InvalidInputError(
                "keepalive_options", f"got {type(self.keepalive_options).__name__}; expected tritonclient.grpc.KeepAliveOptions(...)"
            )
        if self.channel_args is not None:
            pairs = list(self.channel_args) if isinstance(self.channel_args, (list, tuple)) else None
            if pairs is None or not all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in pairs):
                raise InvalidInputError("channel_args", 'expected a list of ("grpc.option", value) pairs')
            set_(self, "channel_args", tuple(pairs))
        set_(self, "headers", check_headers(self.headers))

    @property
    def secure(self) -> bool:
        return self.ssl or self.creds is not None

    def channel_arguments(self) -> List[Tuple[str, Any]]:
        """The gRPC channel arguments: ours, the keepalive, then ``channel_args`` (which win)."""
        arguments = dict(MESSAGE_SIZE_ARGS + RECONNECT_ARGS)
        keepalive = self.keepalive_options
        if keepalive is not None:
            arguments.update(
                {
                    "grpc.keepalive_time_ms": keepalive.keepalive_time_ms,
                    "grpc.keepalive_timeout_ms": keepalive.keepalive_timeout_ms,
                    "grpc.keepalive_permit_without_calls": int(bool(keepalive.keepalive_permit_without_calls)),
                    "grpc.http2.max_pings_without_data": keepalive.http2_max_pings_without_data,
                }
            )
        arguments.update(dict(self.channel_args or ()))
        return list(arguments.items())

    def client_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments of tritonclient's ``InferenceServerClient(url, ...)`` (grpc and grpc.aio)."""
        return dict(
            ssl=self.ssl,
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
            creds=self.creds,
            channel_args=self.channel_arguments(),
        )
