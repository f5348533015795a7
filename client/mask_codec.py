"""Masks on the wire: COCO RLE (pycocotools' compressed counts, our own code) or bit-packed.

sam_session encodes each full-size mask as whichever of the two is smaller, tagged by its first
byte (``contract.MASK_RLE`` / ``contract.MASK_BITS``); the client decodes it back to the HxW bool
array SamPredictor returns. A SAM mask of a photo is a few blobs: its RLE is a few hundred bytes
to a few KB, where the bool array is H*W bytes and bit-packed H*W/8. numpy only, so the server's
python backend and the client share this module; tests/test_rle.py checks it byte-equal to
pycocotools.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from .contract import MASK_BITS, MASK_RLE


def run_lengths(mask: np.ndarray) -> np.ndarray:
    """HxW bool -> COCO's run lengths: column-major, alternating zeros and ones, starting with zeros."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return np.zeros(0, np.int64)
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate(([0], changes, [flat.size])))
    return np.concatenate(([0], counts)) if flat[0] else counts


#: The most 5-bit groups a number may take: run lengths below 2**39 (a mask of up to 512 G pixels).
_GROUPS = 8


def counts_to_string(counts: np.ndarray) -> bytes:
    """Run lengths -> pycocotools' compressed string (rleToString): each value, after the third
    one less the value two before it, as little-endian signed 5-bit groups, 0x20 marking "more",
    plus 48. Vectorized over the characters (a noisy mask of a photo has 10^5 runs)."""
    x = np.asarray(counts, np.int64).copy()
    if len(x) == 0:
        return b""
    x[3:] -= np.asarray(counts, np.int64)[1:-2]
    # groups needed: the fewest L with -2**(5L-1) <= x < 2**(5L-1), from the bit length of x (or ~x)
    bit_length = np.frexp(np.where(x < 0, ~x, x).astype(np.float64))[1]
    length = (bit_length + 5) // 5
    starts = np.cumsum(length) - length
    position = np.arange(int(length.sum())) - np.repeat(starts, length)
    values = np.repeat(x, length)
    more = position < np.repeat(length - 1, length)
    chars = ((values >> (5 * position)) & 0x1F) | (more.astype(np.int64) << 5)
    return (chars + 48).astype(np.uint8).tobytes()


def string_to_counts(text: bytes) -> np.ndarray:
    """pycocotools' compressed string -> run lengths (rleFrString), vectorized."""
    chars = np.frombuffer(bytes(text), np.uint8).astype(np.int64) - 48
    if len(chars) == 0:
        return np.zeros(0, np.int64)
    if np.any(chars < 0) or np.any(chars > 63):
        raise ValueError("RLE counts string holds characters outside '0'..'o'")
    last = np.flatnonzero((chars & 0x20) == 0)  # the last group of each number
    if len(last) == 0 or last[-1] != len(chars) - 1:
        raise ValueError("RLE counts string ends inside a number")
    starts = np.concatenate(([0], last[:-1] + 1))
    position = np.arange(len(chars)) - np.repeat(starts, last - starts + 1)
    if position.max() >= _GROUPS:
        raise ValueError("RLE counts string holds a number of more than 40 bits")
    x = np.add.reduceat((chars & 0x1F) << (5 * position), starts)
    negative = (chars[last] & 0x10) != 0
    x[negative] |= -1 << (5 * (last - starts + 1))[negative]
    counts = x.copy()
    counts[2::2] = np.cumsum(x[2::2])  # value i (i > 2) is a delta from value i - 2
    counts[1::2] = np.cumsum(x[1::2])
    return counts


def decode_run_lengths(counts: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    """COCO run lengths -> HxW bool."""
    height, width = shape
    counts = np.asarray(counts, np.int64)
    if counts.sum() != height * width or np.any(counts < 0):
        raise ValueError(f"RLE runs cover {int(counts.sum())} pixels; expected {height}x{width}={height * width}")
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape(width, height).T


def encode_mask(mask: np.ndarray) -> bytes:
    """HxW bool -> the smaller of MASK_RLE + counts string and MASK_BITS + np.packbits (row-major)."""
    counts = run_lengths(mask)
    bits_size = 1 + (mask.size + 7) // 8
    if len(counts) < bits_size:  # each run takes at least one character
        rle = MASK_RLE + counts_to_string(counts)
        if len(rle) <= bits_size:
            return rle
    return MASK_BITS + np.packbits(np.asarray(mask, dtype=bool).ravel()).tobytes()


def decode_mask(blob: bytes, shape: Tuple[int, int]) -> np.ndarray:
    """One encoded mask -> HxW bool; ValueError if it is neither encoding or does not fit ``shape``."""
    tag, payload = blob[:1], blob[1:]
    if tag == MASK_RLE:
        return decode_run_lengths(string_to_counts(payload), shape)
    if tag == MASK_BITS:
        size = shape[0] * shape[1]
        if len(payload) != (size + 7) // 8:
            raise ValueError(f"bit-packed mask of {len(payload)} bytes; expected {(size + 7) // 8} for {shape}")
        return np.unpackbits(np.frombuffer(payload, np.uint8), count=size).astype(bool).reshape(shape)
    raise ValueError(f"mask encoding {tag!r}; expected {MASK_RLE!r} (COCO RLE) or {MASK_BITS!r} (bit-packed)")
