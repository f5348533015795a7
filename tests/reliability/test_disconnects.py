"""Clients that go away mid-request (killed, cancelled, timed out, asyncio task cancelled) do not
disturb the server: others are answered correctly meanwhile and afterwards, the server stays READY
and its python stubs keep running."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from sam_triton.client import AsyncSamClient

from ..helpers import prompt_arrays, triton_inputs
from ..shm_status import server_regions
from ..triton_counts import POLL_S, pending, poll_until
from .probes import PROBE_CLICK, assert_same_probe, assert_still_serving, probe

SETTLE_S = 300


def finished(url: str) -> dict:
    """Triton's count of finished requests per model: answered, failed, or cancelled (a client that
    went away cancels its gRPC calls; Triton counts those it dropped as failed)."""
    with grpcclient.InferenceServerClient(url) as raw:
        stats = raw.get_inference_statistics(as_json=True, client_timeout=30)["model_stats"]
    return {s["name"]: sum(int(s["inference_stats"][k].get("count", 0)) for k in ("success", "fail")) for s in stats}


def wait_until_finished(url: str, before: dict, model: str, count: int) -> None:
    """Block until ``count`` more requests of ``model`` finished: the abandoned ones reached the server and were dealt with."""
    deadline = time.monotonic() + SETTLE_S
    while finished(url).get(model, 0) - before.get(model, 0) < count:
        assert time.monotonic() < deadline, f"{model} did not finish {count} requests within {SETTLE_S} s"
        time.sleep(0.2)


def arrived(server, before: dict) -> dict:
    """Requests of sam_encoder and sam_decoder that reached the server since ``before``: finished,
    waiting in its queue, or running. Each model has one instance, and an idle instance takes its
    queue at once, so a model with requests waiting is running one more."""
    waiting = pending(server.config.metrics_port)
    done = finished(server.config.grpc_url)
    return {
        model: done.get(model, 0) - before.get(model, 0) + waiting.get(model, 0) + (1 if waiting.get(model, 0) else 0)
        for model in ("sam_encoder", "sam_decoder")
    }


def decoder_queue(server) -> int:
    return pending(server.config.metrics_port).get("sam_decoder", 0)


def long_decoder_request(url: str, points: int) -> None:
    """A decoder request of 16 prompts of ``points`` points on a constant embedding: about a second
    of work for the instance. Requests of other shapes than the ones queued beside it are never batched with them."""
    with grpcclient.InferenceServerClient(url) as raw:
        raw.infer(
            "sam_decoder",
            triton_inputs({"image_embeddings": np.ones((1, 256, 64, 64), np.float32), **prompt_arrays(16, points)}),
            client_timeout=SETTLE_S,
        )


async def poll_async(condition, *, what: str, consecutive: int = 1, timeout_s: float = SETTLE_S) -> None:
    """Await until ``condition()`` (a blocking check, run in a thread) holds on ``consecutive`` checks
    in a row, or fail naming ``what``."""
    deadline, held = time.monotonic() + timeout_s, 0
    while held < consecutive:
        held = held + 1 if await asyncio.to_thread(condition) else 0
        assert time.monotonic() < deadline, f"{what}: not reached within {timeout_s:.0f} s"
        if held < consecutive:
            await asyncio.sleep(POLL_S)


def probe_meanwhile(url, images, reference, errors):
    try:
        assert_same_probe(probe(url, images["dog"]), reference[0], exact=False)
    except BaseException as exc:  # reported by the test
        errors.append(exc)


def test_a_killed_client_process(server, images, reference):
    url = server.config.grpc_url
    before = finished(url)
    victim = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "client_to_kill.py"), url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert victim.stdout.readline().strip() == "sent"
        # its 6 requests (over 30 MB): 3 to sam_decoder, 3 through the ensemble to sam_encoder first
        poll_until(
            lambda: arrived(server, before),
            lambda n: min(n.values()) >= 3,
            timeout_s=SETTLE_S,
            what="the killed client's requests reaching the server",
        )
    finally:
        victim.kill()
        victim.wait()
    errors = []
    meanwhile = threading.Thread(target=probe_meanwhile, args=(url, images, reference, errors))
    meanwhile.start()
    meanwhile.join(SETTLE_S)
    assert not errors, errors
    wait_until_finished(url, before, "sam", 3)  # the dead client's requests reached the server and were dealt with
    wait_until_finished(url, before, "sam_decoder", 3 + 1)  # its own and the probe's click
    assert_still_serving(server, reference, images)


def test_cancelled_and_timed_out_requests(server, images, reference):
    url = server.config.grpc_url
    heavy = triton_inputs({"image_embeddings": np.ones((1, 256, 64, 64), np.float32), **prompt_arrays(16, 2)})
    outcomes = []
    with grpcclient.InferenceServerClient(url) as raw:
        calls = [
            raw.async_infer("sam_decoder", heavy, callback=lambda result, error: outcomes.append(error), client_timeout=600)
            for _ in range(3)
        ]
        for call in calls:
            call.cancel()  # gRPC cancellation, while the server works on them
        for _ in range(3):
            with pytest.raises(InferenceServerException) as error:
                raw.infer("sam_decoder", heavy, client_timeout=0.05)  # the client gives up; the server does not know
            assert error.value.status() == "StatusCode.DEADLINE_EXCEEDED"
    errors = []
    probe_meanwhile(url, images, reference, errors)
    assert not errors, errors
    deadline = time.monotonic() + 60
    while len(outcomes) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [e.status() for e in outcomes] == ["StatusCode.CANCELLED"] * 3
    assert_still_serving(server, reference, images, exact=False)


def test_a_cancelled_asyncio_task_leaves_the_client_usable(server, images, reference):
    url = server.config.grpc_url
    regions_before = server_regions(url)

    async def main():
        async with AsyncSamClient(url, transport="shm", timeout_s=SETTLE_S) as client:  # the probe waits behind the queue
            await client.set_image(images["dog"])
            many = [np.array([[20 + 10 * i, 30]]) for i in range(64)]
            # sam_decoder's one instance busy with a long request and another queued behind it, so that
            # the task's request provably waits in the server's queue when it is cancelled
            busy = [asyncio.create_task(asyncio.to_thread(long_decoder_request, url, points)) for points in (3, 4)]
            # (twice in a row: Triton's batcher holds a request up to its 500 us queue delay before running it)
            await poll_async(lambda: decoder_queue(server) >= 1, consecutive=2, what="a long decoder request running, another queued")
            task = asyncio.create_task(client.predict_batch(point_coords=many, point_labels=[np.array([1])] * 64))
            await poll_async(lambda: decoder_queue(server) >= 2, what="the task's request waiting in sam_decoder's queue")
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert_same_probe(await client.predict(**PROBE_CLICK), reference[0], exact=False)
            assert client.state == "open"
            await asyncio.gather(*busy)

    asyncio.run(main())
    assert server_regions(url) == regions_before, "the cancelled client left shared-memory regions registered"
    assert_still_serving(server, reference, images, exact=False)
