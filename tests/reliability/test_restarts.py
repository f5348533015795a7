"""The server restarts between two requests. While it is down a call fails with a clear error
within its timeouts, never hangs; once it is back (with a new key) the same client's next call
succeeds, its shared-memory regions registered again. (The blocking client over shared memory is
tested in tests/test_client_errors.py; here the asyncio one, and the server that stays down.)"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from sam_triton.build.server.tritonserver import TritonServer
from sam_triton.client import AsyncSamClient, SamClient, ServerUnavailableError
from sam_triton.client.transport.server_key import find_key

from ..helpers import start_server
from ..shm_status import server_regions, shm_segments
from .probes import PROBE_CLICK, assert_same_probe

CONNECT_TIMEOUT_S = 3.0
#: What a call may take beyond connect_timeout_s on a busy machine (backoff, one RPC timeout).
SLACK_S = 15.0


def test_a_restart_between_two_requests(python_repository, cache_dir, tmp_path, images, reference):
    first = start_server(python_repository, cache_dir, tmp_path / "first.log")
    url = first.config.grpc_url
    loop = asyncio.new_event_loop()
    try:
        aio = AsyncSamClient(url, transport="shm", connect_timeout_s=120)
        loop.run_until_complete(aio.set_image(images["dog"]))
        assert_same_probe(loop.run_until_complete(aio.predict(**PROBE_CLICK)), reference[0])
        ours, old_key = server_regions(url), find_key(url)
        plain = SamClient(url, transport="grpc", connect_timeout_s=CONNECT_TIMEOUT_S)
        plain.set_image(images["dog"])
    finally:
        first.stop()

    # down: the first call fails at once (an inference is never retried), the next within connect_timeout_s
    for _attempt in range(2):
        start = time.monotonic()
        with pytest.raises(ServerUnavailableError) as error:
            plain.predict(**PROBE_CLICK)
        assert time.monotonic() - start < CONNECT_TIMEOUT_S + SLACK_S
    assert f"Triton at {url} was not ready within connect_timeout_s=3" in str(error.value)
    with pytest.raises(ServerUnavailableError, match="model 'sam_decoder'"):
        loop.run_until_complete(aio.predict(**PROBE_CLICK))

    second = TritonServer(first.config, log_path=tmp_path / "second.log", cache_dir=cache_dir)  # same ports, new key
    restart = threading.Thread(target=second.start)
    restart.start()
    try:
        # back: the asyncio client waits for it, registers its regions again with the new key, and answers
        assert_same_probe(loop.run_until_complete(aio.predict(**PROBE_CLICK)), reference[0])
        restart.join()
        assert find_key(url) != old_key
        # the regions it still holds are registered again; the one its failed predict leased was
        # quarantined (that request might have run) and freed at the restart, a fresh one took its place
        held = {region.name for region in aio._core.pool.registered_regions()}
        assert held <= server_regions(url) and len(ours - held) == 1 and ours & held
        loop.run_until_complete(aio.close())
        assert not (ours & server_regions(url)) and not (ours & shm_segments())
        # the gRPC client gets its answer too (its embedding came back with set_image)
        np.testing.assert_array_equal(plain.predict(**PROBE_CLICK)[1], reference[0][1])
        plain.close()
    finally:
        restart.join()
        second.stop()
        loop.close()
