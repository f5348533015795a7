"""A loopback gRPC proxy that records the metadata of every call and forwards it unchanged to a
real server (test helper). It is a gRPC server itself (grpcio, a generic handler for any method),
so what it records is what arrived over the wire; request and reply bytes pass through as they are.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Tuple

import grpc

_SIZES = [("grpc.max_send_message_length", 512 * 2**20), ("grpc.max_receive_message_length", 512 * 2**20)]
#: Metadata gRPC itself sets; not forwarded as the caller's own.
_TRANSPORT_KEYS = ("user-agent", "grpc-", ":")


class RecordingProxy(grpc.GenericRpcHandler):
    """Forwards unary calls to ``upstream`` ("host:port"); ``calls`` holds (method, metadata) of each."""

    def __init__(self, upstream: str) -> None:
        self.calls: List[Tuple[str, Dict[str, str]]] = []
        self._lock = threading.Lock()
        self._upstream = grpc.insecure_channel(upstream, options=_SIZES)
        self._server = grpc.server(ThreadPoolExecutor(max_workers=8), handlers=[self], options=_SIZES)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.url = f"127.0.0.1:{self.port}"

    def service(self, handler_call_details):  # grpc.GenericRpcHandler
        method = handler_call_details.method
        forward = self._upstream.unary_unary(method)  # no (de)serializers: bytes in, bytes out

        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            metadata = [(key, value) for key, value in context.invocation_metadata() if not key.startswith(_TRANSPORT_KEYS)]
            with self._lock:
                self.calls.append((method.rsplit("/", 1)[-1], dict(metadata)))
            try:
                return forward(request, metadata=metadata, timeout=context.time_remaining())
            except grpc.RpcError as exc:
                context.abort(exc.code(), exc.details())

        return grpc.unary_unary_rpc_method_handler(handle)

    def methods(self) -> List[str]:
        with self._lock:
            return [method for method, _ in self.calls]

    def __enter__(self) -> "RecordingProxy":
        self._server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stop(grace=None)
        self._upstream.close()
