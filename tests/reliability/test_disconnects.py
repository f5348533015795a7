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

from ..shm_status import server_regions
from .conftest import PROBE_CLICK, assert_same_probe, assert_still_serving, probe, raw_inputs
from .test_bad_requests import _prompts

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


def probe_meanwhile(url, images, reference, errors):
    try:
        assert_same_probe(probe(url, images["dog"]), reference[0], exact=False)
    except BaseException as exc:  # reported by the test
        errors.append(exc)


def test_a_killed_client_process(server, images, reference):
    url = server.config.grpc_url
    before = finished(url)
    victim = subprocess.Popen([sys.executable, str(Path(__file__).parent / "client_to_kill.py"), url],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert victim.stdout.readline().strip() == "sent"
        time.sleep(0.5)  # its 6 requests (over 30 MB) reach the server
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
    heavy = raw_inputs({"image_embeddings": np.ones((1, 256, 64, 64), np.float32), **_prompts(16, 2)})
    outcomes = []
    with grpcclient.InferenceServerClient(url) as raw:
        calls = [raw.async_infer("sam_decoder", heavy, callback=lambda result, error: outcomes.append(error), client_timeout=600)
                 for _ in range(3)]
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
        async with AsyncSamClient(url, transport="shm") as client:
            await client.set_image(images["dog"])
            many = [np.array([[20 + 10 * i, 30]]) for i in range(64)]
            task = asyncio.create_task(client.predict_batch(point_coords=many, point_labels=[np.array([1])] * 64))
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert_same_probe(await client.predict(**PROBE_CLICK), reference[0], exact=False)
            assert client.state == "open"

    asyncio.run(main())
    assert server_regions(url) == regions_before, "the cancelled client left shared-memory regions registered"
    assert_still_serving(server, reference, images, exact=False)
