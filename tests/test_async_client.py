"""AsyncSamClient through a real tritonserver: 32 concurrent tasks sharing one client get the same
answers as the blocking SamClient, and the client's states are explicit."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from sam_triton.build.export.verify import rel_l2
from sam_triton.client import AsyncSamClient, ClientClosedError, ClientNotOpenError, NoImageSetError, SamClient

TASKS = 32


def clicks(image):
    h, w = image.shape[:2]
    return [np.array([[w * (0.05 + 0.9 * k / (TASKS - 1)), h * (0.2 + 0.6 * (k % 5) / 4)]]) for k in range(TASKS)]


@pytest.mark.parametrize("transport", ["shm", "grpc"])
def test_32_concurrent_tasks_match_the_sync_client(grpc_url, images, transport):
    image = images["groceries"]
    points = clicks(image)
    with SamClient(grpc_url, transport="grpc") as sync:
        sync.set_image(image)
        want = [sync.predict(point_coords=p, point_labels=np.array([1])) for p in points]
        want_batch = sync.predict_batch(point_coords=points[:5], point_labels=[np.array([1])] * 5)

    async def main():
        async with AsyncSamClient(grpc_url, transport=transport, timeout_s=300) as client:
            assert client.state == "open" and client.transport == transport
            await client.set_image(image)
            tasks = [client.predict(point_coords=p, point_labels=np.array([1])) for p in points]
            tasks.append(client.predict_batch(point_coords=points[:5], point_labels=[np.array([1])] * 5))
            return await asyncio.gather(*tasks)

    *got, got_batch = asyncio.run(main())
    assert len(got) == TASKS
    for (masks, iou, logits), (ref_masks, ref_iou, ref_logits) in zip(got + [got_batch], want + [want_batch]):
        assert masks.shape == ref_masks.shape and np.mean(masks == ref_masks) >= 0.999
        np.testing.assert_allclose(iou, ref_iou, atol=1e-5)
        assert rel_l2(logits, ref_logits) <= 1e-4


def test_async_lifecycle_and_set_image_during_predicts(grpc_url, images):
    click = dict(point_coords=np.array([[400, 260]]), point_labels=np.array([1]))
    with SamClient(grpc_url, transport="grpc") as sync:  # each photo's answer to the click, for reference
        sync.set_image(images["dog"])
        dog = sync.predict(**click)
        sync.set_image(images["truck"])
        truck = sync.predict(**click)
    assert rel_l2(dog[2], truck[2]) > 0.1  # the two embeddings answer the click differently: the check below can tell

    async def main():
        client = AsyncSamClient(grpc_url)
        assert client.state == "new" and client.transport is None
        with pytest.raises(ClientNotOpenError):
            _ = client.limits
        with pytest.raises(NoImageSetError):
            await client.predict(point_coords=np.array([[10, 10]]), point_labels=np.array([1]))
        assert client.state == "open" and client.limits.max_prompts >= 1  # the first call opened it
        await client.set_image(images["dog"])
        # predicts in flight keep reading the dog's embedding while the truck's replaces it
        in_flight = [client.predict(**click) for _ in range(4)]
        results = await asyncio.gather(*in_flight, client.set_image(images["truck"]))
        for masks, iou, logits in results[:4]:  # the dog's answer, not the truck's
            assert masks.shape == dog[0].shape and np.mean(masks == dog[0]) >= 0.999
            np.testing.assert_allclose(iou, dog[1], atol=1e-5)
            assert rel_l2(logits, dog[2]) <= 1e-4
        assert client.original_size == images["truck"].shape[:2]
        after = await client.predict(**click)  # and from then on the truck's
        assert after[0].shape == truck[0].shape and rel_l2(after[2], truck[2]) <= 1e-4
        await client.close()
        await client.close()  # idempotent
        assert client.state == "closed"
        with pytest.raises(ClientClosedError):
            await client.set_image(images["dog"])

    asyncio.run(main())
