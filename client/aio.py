"""``AsyncSamClient``: ``SamClient``'s API on asyncio (tritonclient.grpc.aio).

Every method that talks to the server is a coroutine with the same name, arguments and result as
in ``SamClient``; the local ones (``reset_image``, ``get_image_embedding``, the properties) are
plain. One client may be shared by many tasks: the embedding region of the current image is
reference-counted, so a ``set_image`` never overwrites an embedding a running ``predict`` reads.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any, Callable, Concatenate, Coroutine, Optional, ParamSpec, TypeVar

import tritonclient.grpc.aio as aioclient

from .client_api import SamClientAPI, as_public_method
from .contract import Limits
from .errors import ClientNotOpenError
from .transport.drivers import run_async
from .transport.ops import FlowOf

Params = ParamSpec("Params")
Result = TypeVar("Result")


def awaitable(
    builder: Callable[Concatenate[SamClientAPI, Params], FlowOf[Result]],
) -> Callable[Concatenate["AsyncSamClient", Params], Coroutine[Any, Any, Result]]:
    """A coroutine method running the flow ``builder`` makes (same name, signature and docstring)."""

    @functools.wraps(builder)
    async def method(self: "AsyncSamClient", *args: Params.args, **kwargs: Params.kwargs) -> Result:
        return await self._run(builder(self, *args, **kwargs))

    return as_public_method(method, builder, "AsyncSamClient")


class AsyncSamClient(SamClientAPI):
    """``SamClient`` on asyncio; the same options. Use ``async with AsyncSamClient(url) as client``."""

    _make_open_lock = staticmethod(asyncio.Lock)

    set_image = awaitable(SamClientAPI._set_image)
    predict = awaitable(SamClientAPI._predict)
    predict_batch = awaitable(SamClientAPI._predict_batch)
    segment = awaitable(SamClientAPI._segment)
    generate = awaitable(SamClientAPI._generate)

    async def open(self) -> "AsyncSamClient":
        """Connect: wait for the server, read the decoder's limits, set up the transport."""
        async with self._open_lock:
            if self._core.should_open():
                self._grpc = aioclient.InferenceServerClient(self.url, **self._core.channel.client_kwargs())
                await run_async(self._open_flow(), self._grpc)
        return self

    async def close(self, *, timeout_s: Optional[float] = None) -> None:
        """Wait up to ``timeout_s`` for calls in flight, unregister and free the shared memory,
        close the channel. Idempotent; the client cannot be used afterwards."""
        await run_async(self._close_flow(timeout_s), self._grpc)

    @property
    def limits(self) -> Limits:
        """Prompt limits of the served decoder; known once open (``await client.open()``)."""
        if self._core.limits is None:
            raise ClientNotOpenError("the limits are read from the server on open: await client.open() first")
        return self._core.limits

    async def __aenter__(self) -> "AsyncSamClient":
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _run(self, flow: FlowOf[Result]) -> Result:
        if self._core.state == "new":
            await self.open()
        return await run_async(flow, self._grpc)
