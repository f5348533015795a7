"""What a Triton server says about the requests it has (test helper): finished requests and
executions per model (its statistics API), requests waiting in its queues (its Prometheus metrics),
and polls with a deadline for a condition on them.

Triton records a request's statistics only after its response is sent, so a read right after a
call can lag behind it: tests wait with ``settled`` or ``poll_until``, never with a fixed sleep.
"""

from __future__ import annotations

import re
import time
import urllib.request
from dataclasses import dataclass
from typing import Callable, Dict, Optional, TypeVar

import tritonclient.grpc as grpcclient

T = TypeVar("T")
POLL_S = 0.05


@dataclass(frozen=True)
class Counts:
    """One model's counters: requests answered and failed (cancelled included), inferences (batch
    items) and executions (the batches its instances ran)."""

    succeeded: int = 0
    failed: int = 0
    inferences: int = 0
    executions: int = 0

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed

    def __sub__(self, other: "Counts") -> "Counts":
        return Counts(*(a - b for a, b in zip(self.astuple(), other.astuple())))

    def astuple(self):
        return self.succeeded, self.failed, self.inferences, self.executions


def counts(url: str) -> Dict[str, Counts]:
    """Model name -> its Counts, from Triton's statistics over gRPC."""
    with grpcclient.InferenceServerClient(url) as raw:
        stats = raw.get_inference_statistics(as_json=True, client_timeout=30)["model_stats"]
    return {
        s["name"]: Counts(
            int(s["inference_stats"]["success"].get("count", 0)),
            int(s["inference_stats"]["fail"].get("count", 0)),
            int(s.get("inference_count", 0)),
            int(s.get("execution_count", 0)),
        )
        for s in stats
    }


def pending(metrics_port: int, host: str = "127.0.0.1") -> Dict[str, int]:
    """Model name -> requests in its queue, not yet handed to an instance (nv_inference_pending_request_count)."""
    with urllib.request.urlopen(f"http://{host}:{metrics_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        model: int(float(value))
        for model, value in re.findall(r'^nv_inference_pending_request_count\{model="([^"]+)",version="\d+"\} (\S+)$', text, re.M)
    }


def poll_until(read: Callable[[], T], done: Callable[[T], bool], *, timeout_s: float, what: str) -> T:
    """``read()`` until ``done`` holds for its value; fails naming ``what`` and the last value at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = read()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"{what}: not reached within {timeout_s:.0f} s (last: {value})"
        time.sleep(POLL_S)


def settled(url: str, model: str, *, at_least: Optional[Counts] = None, quiet_s: float = 1.0, timeout_s: float = 60.0) -> Counts:
    """``model``'s Counts once every counter reached ``at_least`` and none moved for ``quiet_s``:
    the statistics of every request already answered are recorded (they trail responses by
    milliseconds), so a count that is too high shows too."""
    at_least = at_least or Counts()
    deadline = time.monotonic() + timeout_s
    last, since = None, time.monotonic()
    while True:
        now = counts(url).get(model, Counts())
        if now != last:
            last, since = now, time.monotonic()
        elif all(a >= b for a, b in zip(now.astuple(), at_least.astuple())) and time.monotonic() - since >= quiet_s:
            return now
        assert time.monotonic() < deadline, (
            f"{model}'s statistics did not reach {at_least} and settle within {timeout_s:.0f} s (last: {now})"
        )
        time.sleep(POLL_S)
