"""The two ways to run a flow: blocking (tritonclient.grpc) and asyncio (tritonclient.grpc.aio).

They are the only code that differs between ``SamClient`` and ``AsyncSamClient``: each executes a
flow's operations one at a time (the asyncio one runs ``Compute`` ops in a worker thread, so
CPU-heavy post-processing never blocks the event loop); ``Steps`` sends each result back in and throws each error back
in (so the flow's own ``try``/``finally`` blocks free what it holds and translate tritonclient's
errors, including asyncio's CancelledError).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Iterator, Optional

from .ops import Compute, Flow, Rpc, Sleep


class Steps:
    """Iterate over a flow's operations; set ``result`` or ``error`` after each; then read ``value``."""

    def __init__(self, flow: Flow) -> None:
        self._flow = flow
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.value: Any = None

    def __iter__(self) -> Iterator[Any]:
        while True:
            error, self.error = self.error, None
            try:
                op = self._flow.throw(error) if error is not None else self._flow.send(self.result)
            except StopIteration as stop:
                self.value = stop.value
                return
            self.result = None
            if not isinstance(op, (Rpc, Sleep, Compute)):
                raise TypeError(f"a flow yielded {op!r}; expected Rpc, Sleep or Compute")  # a bug of ours
            yield op


def run_blocking(flow: Flow, client: Any) -> Any:
    """Run ``flow`` to its end with a ``tritonclient.grpc.InferenceServerClient``."""
    steps = Steps(flow)
    for op in steps:
        try:
            if isinstance(op, Compute):
                steps.result = op.function(*op.args, **op.kwargs)
            elif isinstance(op, Sleep):
                time.sleep(op.seconds)
                steps.result = None
            else:
                steps.result = getattr(client, op.method)(**op.kwargs)
        except BaseException as exc:
            steps.error = exc
    return steps.value


async def run_async(flow: Flow, client: Any) -> Any:
    """Run ``flow`` to its end with a ``tritonclient.grpc.aio.InferenceServerClient``."""
    steps = Steps(flow)
    for op in steps:
        try:
            if isinstance(op, Compute):
                steps.result = await asyncio.to_thread(op.function, *op.args, **op.kwargs)
            elif isinstance(op, Sleep):
                await asyncio.sleep(op.seconds)
                steps.result = None
            else:
                steps.result = await getattr(client, op.method)(**op.kwargs)
        except BaseException as exc:
            steps.error = exc
    return steps.value
