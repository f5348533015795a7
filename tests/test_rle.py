"""Our COCO RLE encoder against pycocotools: byte-equal counts strings, and every encoding round-trips."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as coco

from sam_triton.client.contract import MASK_BITS, MASK_RLE
from sam_triton.client.mask_codec import counts_to_string, decode_mask, encode_mask, run_lengths, string_to_counts


def masks():
    rng = np.random.default_rng(0)
    yield np.zeros((7, 5), bool)
    yield np.ones((7, 5), bool)
    yield rng.random((33, 41)) > 0.5  # noise: many runs, large deltas both ways
    blob = np.zeros((480, 640), bool)
    blob[100:300, 200:500] = True
    blob[350:360, 10:600] = True
    yield blob
    yield rng.random((1, 1)) > 0.5
    big = np.zeros((1500, 2000), bool)  # long runs: counts above 2**20 need several 5-bit groups
    big[1400:, 1900:] = True
    yield big


@pytest.mark.parametrize("mask", list(masks()), ids=lambda m: f"{m.shape[0]}x{m.shape[1]}-{int(m.sum())}")
def test_counts_string_equals_pycocotools(mask):
    theirs = coco.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"]
    assert counts_to_string(run_lengths(mask)) == theirs
    assert np.array_equal(string_to_counts(theirs), run_lengths(mask))
    assert np.array_equal(
        decode_mask(MASK_RLE + theirs, mask.shape), coco.decode({"size": list(mask.shape), "counts": theirs}).astype(bool)
    )


@pytest.mark.parametrize("mask", list(masks()), ids=lambda m: f"{m.shape[0]}x{m.shape[1]}")
def test_encode_picks_the_smaller_and_round_trips(mask):
    blob = encode_mask(mask)
    rle_size = 1 + len(counts_to_string(run_lengths(mask)))
    assert len(blob) == min(rle_size, 1 + (mask.size + 7) // 8)
    assert blob[:1] in (MASK_RLE, MASK_BITS)
    assert np.array_equal(decode_mask(blob, mask.shape), mask)


def test_noise_goes_bit_packed_and_blobs_go_rle():
    noise = np.random.default_rng(1).random((64, 64)) > 0.5
    blob = np.zeros((64, 64), bool)
    blob[10:40, 5:60] = True
    assert encode_mask(noise)[:1] == MASK_BITS
    assert encode_mask(blob)[:1] == MASK_RLE


def test_bad_encodings_are_refused():
    with pytest.raises(ValueError, match="mask encoding b'X'"):
        decode_mask(b"Xabc", (2, 2))
    with pytest.raises(ValueError, match="RLE runs cover"):
        decode_mask(MASK_RLE + counts_to_string(np.array([3])), (2, 2))
    with pytest.raises(ValueError, match="bit-packed mask of 2 bytes"):
        decode_mask(MASK_BITS + b"\0\0", (2, 2))
