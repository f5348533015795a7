"""A loopback TCP proxy that counts the bytes each way: what a client puts on the wire.

Only for measuring a client against a server on this machine: it listens on 127.0.0.1 and
forwards to one target; ``client_to_server`` and ``server_to_client`` count payload bytes of
every connection (gRPC framing and headers included, TCP/IP headers not).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Optional

CHUNK_BYTES = 1 << 16


class CountingProxy:
    """``with CountingProxy("127.0.0.1", 8001) as proxy: SamClient(proxy.url)...``"""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, int(target_port))
        self.client_to_server = 0
        self.server_to_client = 0
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._server: Optional[asyncio.base_events.Server] = None
        self._thread: Optional[threading.Thread] = None
        self.url = ""

    def reset(self) -> None:
        self.client_to_server = self.server_to_client = 0

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: bool) -> None:
        try:
            while chunk := await reader.read(CHUNK_BYTES):
                if upstream:
                    self.client_to_server += len(chunk)
                else:
                    self.server_to_client += len(chunk)
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
            await asyncio.gather(self._pump(client_reader, server_writer, True), self._pump(server_reader, client_writer, False))
        except (ConnectionError, asyncio.CancelledError):  # the server went away, or the proxy stops
            client_writer.close()

    def __enter__(self) -> "CountingProxy":
        started = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.url = f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="counting-proxy", daemon=True)
        self._thread.start()
        started.wait(10)
        return self

    async def _shutdown(self) -> None:
        if self._server is not None:  # None: the loop started but the server did not
            self._server.close()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop.close()
