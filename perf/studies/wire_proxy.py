"""A loopback TCP proxy that counts the bytes each way: what a client puts on the wire.

Only for measuring a client against a server on this machine: it listens on 127.0.0.1 (or
another address of this host, ``listen_host``) and forwards to one target; ``client_to_server``
and ``server_to_client`` count payload bytes of every connection (gRPC framing and headers
included, TCP/IP headers not).

It can also shape the link in user space (kernel netem is not available on these machines):
``bandwidth_bps`` serializes each direction of a connection at that rate, and ``one_way_delay_s``
delivers every chunk that much later (a round trip is twice it). Chunks are queued, not dropped:
a link with unbounded buffers, no loss; TCP's and HTTP/2's own windows still apply end to end.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Optional

CHUNK_BYTES = 1 << 16


class CountingProxy:
    """``with CountingProxy("127.0.0.1", 8001) as proxy: SamClient(proxy.url)...``"""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        listen_host: str = "127.0.0.1",
        one_way_delay_s: float = 0.0,
        bandwidth_bps: Optional[float] = None,
    ) -> None:
        if one_way_delay_s < 0 or (bandwidth_bps is not None and bandwidth_bps <= 0):
            raise ValueError(f"one_way_delay_s {one_way_delay_s} must be >= 0 and bandwidth_bps {bandwidth_bps} > 0")
        self.target = (target_host, int(target_port))
        self.one_way_delay_s = float(one_way_delay_s)
        self.bandwidth_bps = bandwidth_bps
        self.listen_host = listen_host  # another of this host's addresses: the client sees a "remote" server
        self.client_to_server = 0
        self.server_to_client = 0
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._server: Optional[asyncio.base_events.Server] = None
        self._thread: Optional[threading.Thread] = None
        self.url = ""

    def reset(self) -> None:
        self.client_to_server = self.server_to_client = 0

    @property
    def shaped(self) -> bool:
        return self.one_way_delay_s > 0 or self.bandwidth_bps is not None

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: bool) -> None:
        loop = asyncio.get_running_loop()
        queue: "Optional[asyncio.Queue]" = asyncio.Queue() if self.shaped else None
        sender = loop.create_task(self._deliver(queue, writer)) if queue is not None else None
        link_free = loop.time()  # when this direction's link has sent everything queued so far
        try:
            while chunk := await reader.read(CHUNK_BYTES):
                if upstream:
                    self.client_to_server += len(chunk)
                else:
                    self.server_to_client += len(chunk)
                if queue is None:
                    writer.write(chunk)
                    await writer.drain()
                    continue
                link_free = max(link_free, loop.time())
                if self.bandwidth_bps is not None:
                    link_free += 8 * len(chunk) / self.bandwidth_bps
                queue.put_nowait((link_free + self.one_way_delay_s, chunk))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if queue is not None and sender is not None:
                queue.put_nowait(None)
                await asyncio.gather(sender, return_exceptions=True)
            writer.close()

    @staticmethod
    async def _deliver(queue: "asyncio.Queue", writer: asyncio.StreamWriter) -> None:
        """Write each queued chunk at its arrival time, in order."""
        loop = asyncio.get_running_loop()
        while (item := await queue.get()) is not None:
            arrival, chunk = item
            if arrival > loop.time():
                await asyncio.sleep(arrival - loop.time())
            writer.write(chunk)
            await writer.drain()

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
            self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, self.listen_host, 0))
            self.url = f"{self.listen_host}:{self._server.sockets[0].getsockname()[1]}"
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
