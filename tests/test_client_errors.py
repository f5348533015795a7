"""Timeouts, retries and errors of the clients against real tritonservers.

Retried: only reads (readiness, model config, shared-memory status) on UNAVAILABLE, and the
readiness wait before the first call and after an UNAVAILABLE. Never retried: an inference or a
region (un)registration, since the server may have run it. A server restart is survived: the next
call waits for the server, registers again the regions it lost, and answers.
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from sam_triton.build.server.tritonserver import TritonServer, free_port
from sam_triton.client import (
    AsyncSamClient,
    InvalidInputError,
    ModelNotFoundError,
    SamClient,
    ServerUnavailableError,
)
from sam_triton.perf.studies.wire_proxy import CountingProxy

from .helpers import start_server
from .shm_status import server_regions, shm_segments

CLICK = dict(point_coords=np.array([[400, 260]]), point_labels=np.array([1]))


def test_no_server_fails_after_the_connect_timeout():
    url = f"127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(ServerUnavailableError, match=f"Triton at {url} was not ready within connect_timeout_s=1"):
        SamClient(url, connect_timeout_s=1.0).open()
    assert 0.9 <= time.monotonic() - start < 10

    async def main():
        with pytest.raises(ServerUnavailableError, match="connect_timeout_s=1"):
            async with AsyncSamClient(url, connect_timeout_s=1.0):
                pass

    asyncio.run(main())


def test_bad_input_is_rejected_before_a_byte_is_sent(grpc_url, images):
    host, port = grpc_url.rsplit(":", 1)
    with CountingProxy(host, int(port)) as proxy, SamClient(proxy.url) as client:
        client.set_image(images["dog"])
        proxy.reset()
        with pytest.raises(InvalidInputError, match=r"point_labels: got shape \(2,\); expected \(1,\)"):
            client.predict(point_coords=np.array([[10, 10]]), point_labels=np.array([1, 1]))
        with pytest.raises(InvalidInputError, match="timeout_s: got -1; expected a finite number of seconds > 0"):
            client.predict(**CLICK, timeout_s=-1)
        with pytest.raises(InvalidInputError, match="image: got array of shape"):
            client.set_image(np.zeros((4, 4), np.uint8))
        # HTTP/2 may still acknowledge the last reply (window updates, pings): tens of bytes, never a request
        assert proxy.client_to_server < 200


def test_unknown_model_names_the_model(grpc_url):
    with SamClient(grpc_url) as client:
        with pytest.raises(ModelNotFoundError, match=r"model 'sam_nothing': .*; the request was sam_nothing\(x FP32\[1, 2\]\)"):
            client._infer("sam_nothing", {"x": np.zeros((1, 2), np.float32)}, ("y",))


def test_a_restarted_server_is_waited_for_and_gets_its_regions_back(python_repository, cache_dir, tmp_path, images):
    first = start_server(python_repository, cache_dir, tmp_path / "first.log")
    url = first.config.grpc_url
    try:
        client = SamClient(url, transport="shm", connect_timeout_s=60)
        client.set_image(images["dog"])
        want = client.predict(**CLICK)
        ours = server_regions(url)
        assert ours
    finally:
        first.stop()
    with pytest.raises(ServerUnavailableError, match="model 'sam_decoder'"):
        client.predict(**CLICK)  # not retried: a click the server might have run
    second = TritonServer(first.config, log_path=tmp_path / "second.log", cache_dir=cache_dir)  # the same ports
    restart = threading.Thread(target=second.start)
    restart.start()
    try:
        got = client.predict(**CLICK)  # waits for the new server, registers the regions again
        np.testing.assert_allclose(got[1], want[1], atol=1e-5)
        # the regions it holds are registered again; the failed click's logits region was
        # quarantined (that request might have run) and freed at the restart, a fresh one replaced it
        held = {region.name for region in client._core.pool.registered_regions()}
        assert held <= server_regions(url) and len(ours - held) == 1 and ours & held
        client.close()
        assert not (ours & server_regions(url)) and not (ours & shm_segments())
    finally:
        restart.join()
        second.stop()


def test_close_after_the_server_died_is_prompt_and_frees_local_memory(python_repository, cache_dir, tmp_path, images):
    server = start_server(python_repository, cache_dir, tmp_path / "server.log")
    client = SamClient(server.config.grpc_url, transport="shm")
    client.set_image(images["groceries"])
    ours = server_regions(server.config.grpc_url)
    server.stop()
    start = time.monotonic()
    client.close()
    assert time.monotonic() - start < 10
    assert ours and not (ours & shm_segments())
