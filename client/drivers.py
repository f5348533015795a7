"""The two ways to run a flow: blocking (tritonclient.grpc) and asyncio (tritonclient.grpc.aio).

They are the only code that differs between ``SamClient`` and ``AsyncSamClient``: each executes a
flow's operations one at a time, sends each result back in, and throws each error back in (so the
flow's own ``try``/``finally`` blocks free what it holds and translate tritonclient's errors).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .ops import Flow, Rpc, Sleep


def _step(flow: Flow, value: Any, error: BaseException | None) -> Any:
    return flow.throw(error) if error is not None else flow.send(value)


def run_blocking(flow: Flow, client: Any) -> Any:
    """Run ``flow`` to its end with a ``tritonclient.grpc.InferenceServerClient``."""
    value, error = None, None
    while True:
        try:
            op = _step(flow, value, error)
        except StopIteration as stop:
            return stop.value
        value, error = None, None
        try:
            if isinstance(op, Sleep):
                time.sleep(op.seconds)
            else:
                assert isinstance(op, Rpc), f"a flow yielded {op!r}"  # a bug of ours, never user input
                value = getattr(client, op.method)(**op.kwargs)
        except BaseException as exc:  # thrown into the flow, which frees what it holds and re-raises
            error = exc


async def run_async(flow: Flow, client: Any) -> Any:
    """Run ``flow`` to its end with a ``tritonclient.grpc.aio.InferenceServerClient``."""
    value, error = None, None
    while True:
        try:
            op = _step(flow, value, error)
        except StopIteration as stop:
            return stop.value
        value, error = None, None
        try:
            if isinstance(op, Sleep):
                await asyncio.sleep(op.seconds)
            else:
                assert isinstance(op, Rpc), f"a flow yielded {op!r}"  # a bug of ours, never user input
                value = await getattr(client, op.method)(**op.kwargs)
        except BaseException as exc:  # includes CancelledError: the flow still frees its regions
            error = exc
