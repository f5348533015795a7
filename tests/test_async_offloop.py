"""Large calls on a 12 MP photo through a real tritonserver: the asyncio client keeps its event loop
free while it upsamples masks (a ticker task keeps ticking), and predict_batch's memory stays near
the size of its result instead of the float32 logits of every mask at full resolution."""

from __future__ import annotations

import asyncio
import time
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from sam_triton.client import AsyncSamClient, SamClient
from sam_triton.client.predictor.requests import UPSAMPLE_CHUNK_BYTES

from .helpers import IMAGES_DIR

#: A 12 MP photo: the truck (1800x1200) upsampled to 4000x3000, as a phone takes them.
BIG_SIZE = (4000, 3000)
PROMPTS = 8
TICK_S = 0.01


@pytest.fixture(scope="module")
def big_photo() -> np.ndarray:
    with Image.open(IMAGES_DIR / "truck.jpg") as photo:
        return np.asarray(photo.convert("RGB").resize(BIG_SIZE, Image.BILINEAR))


def clicks(image):
    h, w = image.shape[:2]
    return dict(
        point_coords=[np.array([[w * (0.1 + 0.1 * k), h * (0.3 + 0.05 * k)]]) for k in range(PROMPTS)],
        point_labels=[np.array([1])] * PROMPTS,
    )


async def ticking(call):
    """Run ``call`` while a second task ticks every TICK_S; returns (result, duration, largest gap between ticks)."""
    ticks = []
    done = asyncio.Event()

    async def ticker():
        while not done.is_set():
            ticks.append(time.monotonic())
            await asyncio.sleep(TICK_S)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)  # the ticker's first tick
    start = time.monotonic()
    try:
        result = await call
    finally:
        end = time.monotonic()
        done.set()
        await task
    stamps = [start] + [t for t in ticks if start <= t <= end] + [end]
    return result, end - start, max(np.diff(stamps))


def test_the_event_loop_keeps_running_during_a_large_predict_batch(grpc_url, big_photo):
    prompts = clicks(big_photo)
    with SamClient(grpc_url, transport="grpc") as sync:
        sync.set_image(big_photo)
        want = sync.predict_batch(**prompts)

    async def main():
        async with AsyncSamClient(grpc_url, timeout_s=300) as client:
            _, set_s, set_gap = await ticking(client.set_image(big_photo))
            got, call_s, gap = await ticking(client.predict_batch(**prompts))
            return set_s, set_gap, got, call_s, gap

    set_s, set_gap, got, call_s, gap = asyncio.run(main())
    for a, b in zip(got, want):  # the same answer as the blocking client, bit for bit
        assert a.shape == b.shape and np.array_equal(a, b)
    assert got[0].shape == (PROMPTS, 3, BIG_SIZE[1], BIG_SIZE[0])
    # 24 masks of 12 MP upsampled: about 150 GFLOP, a second or more on any CPU; in the loop it
    # would be one gap as long as the call
    assert call_s > 0.5, f"predict_batch took {call_s:.2f} s: too short to tell"
    assert gap < 0.25 * call_s, f"the event loop stalled for {gap:.2f} s of a {call_s:.2f} s predict_batch"
    assert set_gap < max(0.25, 0.5 * set_s), f"the event loop stalled for {set_gap:.2f} s of a {set_s:.2f} s set_image"


def test_the_event_loop_keeps_running_during_generate(grpc_url, big_photo):
    options = dict(points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0)  # keep every mask: all upsampled

    async def main():
        async with AsyncSamClient(grpc_url, timeout_s=300) as client:
            return await ticking(client.generate(big_photo, **options))

    records, call_s, gap = asyncio.run(main())
    assert records and records[0]["segmentation"].shape == big_photo.shape[:2]
    assert call_s > 0.5, f"generate took {call_s:.2f} s: too short to tell"
    assert gap < 0.25 * call_s, f"the event loop stalled for {gap:.2f} s of a {call_s:.2f} s generate"


def test_predict_batch_memory_stays_near_its_result(grpc_url, big_photo):
    prompts = clicks(big_photo)
    with SamClient(grpc_url, transport="grpc", timeout_s=300) as client:
        client.set_image(big_photo)
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            before, _ = tracemalloc.get_traced_memory()
            masks, iou, logits = client.predict_batch(**prompts)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    result = masks.nbytes + iou.nbytes + logits.nbytes
    decoder_reply = 2 * PROMPTS * 4 * 256 * 256 * 4  # the decoder's 4 logits per prompt, as received and as read
    bound = result + decoder_reply + 2 * UPSAMPLE_CHUNK_BYTES + 32 * 2**20
    all_at_once = masks.size * 4  # what upsampling every mask at once held in float32 (9 GB for 64 prompts)
    assert bound < result + all_at_once, "the photo is too small to tell chunked from all at once"
    assert peak - before < bound, (
        f"predict_batch held {(peak - before) / 2**20:.0f} MiB at its peak for a"
        f" {result / 2**20:.0f} MiB result (bound {bound / 2**20:.0f} MiB)"
    )
