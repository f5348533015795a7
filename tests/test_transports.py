"""Embed once, prompt many: the shared-memory transport against the plain gRPC one, through a real
tritonserver: same answers, few bytes per click, regions cleaned up on close and after errors
(checked with the server's shared-memory status API and /dev/shm), two clients at once."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from sam_triton.client import (
    InvalidRequestError,
    RequestTimeoutError,
    SamClient,
    SharedMemoryError,
    TransportUnavailableError,
)
from sam_triton.client.transport.regions import REGION_KINDS, SystemRegion
from sam_triton.client.transport.server_key import find_key
from sam_triton.perf.studies.wire_proxy import CountingProxy

from .helpers import CLICK, answers, assert_same_answers, decoder_arrays
from .shm_status import server_regions, shm_segments


def test_auto_picks_shared_memory_on_loopback(grpc_url):
    with SamClient(grpc_url) as client:
        assert client.state == "open" and client.transport == "shm"
    assert client.state == "closed"


def test_shm_gives_the_same_answers_as_grpc_and_cleans_up(grpc_url, images):
    before_server, before_shm = server_regions(grpc_url), shm_segments()
    with SamClient(grpc_url, transport="grpc") as plain:
        want = answers(plain, images["dog"])
    assert server_regions(grpc_url) == before_server  # grpc registers nothing
    with SamClient(grpc_url, transport="shm") as client:
        got = answers(client, images["dog"])
        ours = server_regions(grpc_url) - before_server
        assert ours, "the shm client registered no region"
        assert ours <= shm_segments(), "a registered region has no /dev/shm object"
        np.testing.assert_allclose(client.get_image_embedding(), plain_embedding(grpc_url, images["dog"]), rtol=0, atol=0)
    assert_same_answers(got, want)
    assert not (ours & server_regions(grpc_url)), "regions left registered after close"
    assert not (ours & shm_segments()), "segments left in /dev/shm after close"
    # only this process's: other test runs on the machine share /dev/shm
    assert not {s for s in shm_segments() - before_shm if s.startswith(f"sam_triton_{os.getpid()}_")}


def plain_embedding(url, image):
    with SamClient(url, transport="grpc") as client:
        client.set_image(image)
        return client.get_image_embedding()


def test_a_click_sends_only_the_prompt_with_shm(grpc_url, images):
    host, port = grpc_url.rsplit(":", 1)
    sent = {}
    for transport in ("shm", "grpc"):
        with CountingProxy(host, int(port)) as proxy, SamClient(proxy.url, transport=transport, api_key=find_key(grpc_url)) as client:
            client.set_image(images["dog"])
            client.predict(**CLICK)
            proxy.reset()
            for _ in range(3):
                client.predict(**CLICK)
            sent[transport] = (proxy.client_to_server / 3, proxy.server_to_client / 3)
    assert sent["shm"][0] < 2_000 and sent["shm"][1] < 2_000, sent  # point, label, has_mask; IoU scores back
    assert sent["grpc"][0] > 4 * 2**20 and sent["grpc"][1] > 2**20, sent  # the 4 MB embedding; 1 MB logits back


def test_regions_are_freed_after_errors(grpc_url, images):
    before = server_regions(grpc_url)
    with pytest.raises(RuntimeError, match="user code failed"):
        with SamClient(grpc_url, transport="shm") as client:
            client.set_image(images["truck"])
            client.predict(**CLICK)  # registers the regions a click uses
            with pytest.raises(InvalidRequestError):  # the server rejects a request past our checks
                client._infer("sam_decoder", decoder_arrays(point_labels=np.array([[[9, -1]]], np.float32)), ("iou_predictions",))
            with pytest.raises(RequestTimeoutError, match="model 'sam_decoder'"):
                client.predict(**CLICK, timeout_s=1e-4)
            masks, _, _ = client.predict(**CLICK)  # still serving after both errors
            assert masks.shape[1:] == images["truck"].shape[:2]
            ours = server_regions(grpc_url) - before
            raise RuntimeError("user code failed")
    assert client.closed
    assert ours and not (ours & server_regions(grpc_url)) and not (ours & shm_segments())


def test_two_clients_at_once(grpc_url, images):
    with SamClient(grpc_url, transport="grpc") as plain:
        want = {name: answers(plain, images[name]) for name in ("dog", "groceries")}
    before = server_regions(grpc_url)
    got, errors = {}, []
    clients = {name: SamClient(grpc_url, transport="shm") for name in want}

    def work(name):
        try:
            for _ in range(2):
                got[name] = answers(clients[name], images[name])
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(name,)) for name in want]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    ours = server_regions(grpc_url) - before
    for client in clients.values():
        client.close()
    assert not errors, errors
    for name in want:
        assert_same_answers(got[name], want[name])
    assert ours and not (ours & server_regions(grpc_url)) and not (ours & shm_segments())


def test_cuda_transport_says_why_it_cannot_work_here(grpc_url):
    try:
        import tritonclient.utils.cuda_shared_memory  # noqa: F401
    except (ImportError, RuntimeError):
        pass
    else:
        pytest.skip("tritonclient's CUDA utilities import here: this check is for machines without them")
    with pytest.raises(TransportUnavailableError, match=r"transport='cuda' needs .*cuda-python.*use transport='shm'"):
        SamClient(grpc_url, transport="cuda").open()


class UnmappableRegion(SystemRegion):
    """A region the server cannot open, as for a server on another host: unlinked right away."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        os.unlink(f"/dev/shm/{self.name}")


def test_a_server_that_cannot_map_the_region(grpc_url, images, monkeypatch):
    monkeypatch.setitem(REGION_KINDS, "shm", UnmappableRegion)
    with pytest.raises(
        SharedMemoryError, match=r"Unable to open shared memory region.*transport='grpc' works everywhere.*registering system shared memory"
    ):
        SamClient(grpc_url, transport="shm").open()
    with SamClient(grpc_url) as client:  # auto falls back to grpc
        assert client.transport == "grpc"
        client.set_image(images["dog"])
        masks, _, _ = client.predict(**CLICK)
        assert masks.shape == (3, 534, 800)
