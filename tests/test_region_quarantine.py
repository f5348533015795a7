"""A call that timed out or was cancelled leaves its request running in Triton, which still writes
the outputs into the client's shared-memory region. Against a real tritonserver with two decoder
instances (so the next call runs beside the abandoned one): that region is quarantined, never
leased again, the next calls get the right answers in fresh regions, and the quarantined region
is unregistered and freed once the server lets go of it (checked with the server's
shared-memory status and /dev/shm)."""

from __future__ import annotations

import asyncio
import mmap
import os
import time

import numpy as np
import pytest

from sam_triton.build.export.verify import rel_l2
from sam_triton.build.repository.assemble import RepositoryOptions, assemble
from sam_triton.client import AsyncSamClient, RequestTimeoutError, SamClient

from .helpers import CLICK, assert_same_answers, serving
from .shm_status import server_regions, shm_segments

#: The abandoned call: 64 prompts in one decoder request (seconds on the tiny preset here);
#: the next call: 16 prompts, which fit in the abandoned call's 64 MB logits region.
SLOW_PROMPTS, NEXT_PROMPTS = 64, 16
DEADLINE_S = 120.0


@pytest.fixture(scope="module")
def two_decoders_url(request, tmp_path_factory, tiny_onnx, cache_dir):
    repository = assemble(
        tmp_path_factory.mktemp("two_decoders") / "model_repository",
        RepositoryOptions(runtime="python", decoder_instances=2),
        onnx_dir=tiny_onnx[0],
    )
    log_path = tmp_path_factory.mktemp("logs") / "two-decoders.log"
    for srv in serving(request, repository, cache_dir, log_path):
        yield srv.config.grpc_url


def prompts(image, count, row):
    h, w = image.shape[:2]
    return dict(
        point_coords=[np.array([[w * (0.05 + 0.9 * k / count), h * row]]) for k in range(count)], point_labels=[np.array([1])] * count
    )


@pytest.fixture(scope="module")
def references(two_decoders_url, images):
    """(slow prompts, next prompts, their answers through the plain gRPC transport)."""
    image = images["dog"]
    slow, following = prompts(image, SLOW_PROMPTS, 0.4), prompts(image, NEXT_PROMPTS, 0.6)
    with SamClient(two_decoders_url, transport="grpc", timeout_s=DEADLINE_S) as plain:
        plain.set_image(image)
        return slow, following, plain.predict_batch(**slow), plain.predict_batch(**following)


def mapped(name):
    """A read-only mapping of the /dev/shm object ``name`` of our own, alive after the client frees it."""
    fd = os.open(f"/dev/shm/{name}", os.O_RDONLY)
    try:
        return mmap.mmap(fd, 0, prot=mmap.PROT_READ)
    finally:
        os.close(fd)


def wait_for(condition, what, timeout_s=DEADLINE_S):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s:.0f} s: {what}"
        time.sleep(0.05)


def test_a_timed_out_call_leaves_its_region_in_quarantine(two_decoders_url, images, references):
    slow, following, want_slow, want_next = references
    with SamClient(two_decoders_url, transport="shm", timeout_s=DEADLINE_S) as client:
        client.set_image(images["dog"])
        client.predict(**CLICK)  # registers the zero mask_input region and a 1 MB logits region
        pool = client._core.pool
        before = server_regions(two_decoders_url)
        with pytest.raises(RequestTimeoutError):
            client.predict_batch(**slow, timeout_s=0.5)
        # the server still runs the 64 prompts and will write their logits into this new region
        (abandoned,) = server_regions(two_decoders_url) - before
        assert pool.quarantined_names() == [abandoned]
        late = mapped(abandoned)
        registered = server_regions(two_decoders_url)

        got = client.predict_batch(**following)  # on the second decoder instance, beside the abandoned call
        assert_same_answers([got], [want_next])
        fresh = server_regions(two_decoders_url) - registered
        assert fresh, "the next call registered no fresh region: it reused the quarantined one"
        assert abandoned not in fresh and (abandoned in pool.quarantined_names() or abandoned not in server_regions(two_decoders_url))

        # the hazard was real: the server wrote the abandoned call's logits after the client gave up
        def landed():
            written = np.frombuffer(late, np.float32).reshape(SLOW_PROMPTS, 4, 256, 256)
            return written.any() and rel_l2(written[:, 1:], want_slow[2]) <= 1e-5

        wait_for(landed, "the abandoned call's logits landed in the quarantined region")
        late.close()

        # once the server lets go, the next call's clean-up unregisters and frees the region
        def released():
            assert_same_answers([client.predict_batch(**following)], [want_next])
            return abandoned not in pool.quarantined_names()

        wait_for(released, "the quarantined region was released")
        assert abandoned not in server_regions(two_decoders_url) and abandoned not in shm_segments()
        ours = server_regions(two_decoders_url) - before
    assert not (ours & server_regions(two_decoders_url)) and not (ours & shm_segments())


def test_a_cancelled_task_leaves_its_region_in_quarantine(two_decoders_url, images, references):
    slow, following, _, want_next = references

    async def main():
        async with AsyncSamClient(two_decoders_url, transport="shm", timeout_s=DEADLINE_S) as client:
            await client.set_image(images["dog"])
            await client.predict_batch(**slow)  # registers the regions (so the next one leases and sends at once)
            pool = client._core.pool
            logits_region = max(pool.registered_regions(), key=lambda region: region.byte_size)
            task = asyncio.create_task(client.predict_batch(**slow))
            deadline = time.monotonic() + DEADLINE_S
            while not pool._entries[logits_region.name].refs:  # leased: the decoder request is on its way
                assert time.monotonic() < deadline and not task.done()
                await asyncio.sleep(0.001)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert pool.quarantined_names() == [logits_region.name]
            registered = server_regions(two_decoders_url)
            got = await client.predict_batch(**following)
            fresh = server_regions(two_decoders_url) - registered
            return logits_region.name, got, fresh

    abandoned, got, fresh = asyncio.run(main())  # close() waits for the server to let go of the region
    assert_same_answers([got], [want_next])
    assert fresh and abandoned not in fresh, "the next call reused the quarantined region"
    assert abandoned not in server_regions(two_decoders_url) and abandoned not in shm_segments()
