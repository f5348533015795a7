"""Bad input is refused by the client before a byte is sent, with the argument, what it got
(shape, dtype, value) and what was expected; the exact text is the contract.

A counting proxy sits between client and server: each refusal must leave it (almost) silent.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from PIL import Image

from sam_triton.client import AsyncSamClient, InvalidInputError, NoImageSetError, SamClient
from sam_triton.perf.studies.wire_proxy import CountingProxy

from .probes import PROBE_CLICK

# HTTP/2 may still acknowledge the last reply (window updates, pings): tens of bytes, never a request
SILENT_BYTES = 200

IMAGES = {
    "grayscale": (
        np.zeros((100, 120), np.uint8),
        "image: got array of shape (100, 120) and dtype uint8; expected HxWx3 (RGB): a grayscale image must be converted first",
    ),
    "grayscale with a channel": (
        np.zeros((100, 120, 1), np.uint8),
        "image: got array of shape (100, 120, 1) and dtype uint8; expected HxWx3 (RGB): a grayscale image",
    ),
    "rgba": (
        np.zeros((100, 120, 4), np.uint8),
        "image: got array of shape (100, 120, 4) and dtype uint8; expected HxWx3 (RGB): drop the alpha channel of an RGBA image first (image[..., :3])",
    ),
    "16-bit": (
        np.full((100, 120, 3), 40000, np.uint16),
        "image: got array of shape (100, 120, 3) and dtype uint16; expected dtype uint8 (8 bits per channel): scale 16-bit images first, e.g. (image >> 8).astype(np.uint8)",
    ),
    "float in [0, 1]": (
        np.linspace(0, 1, 100 * 120 * 3, dtype=np.float32).reshape(100, 120, 3),
        "image: got array of shape (100, 120, 3) and dtype float32 with values in [0, 1]; expected dtype uint8 in [0, 255]: convert with (image * 255).round().astype(np.uint8)",
    ),
    "int64 of bytes": (
        np.full((100, 120, 3), 7, np.int64),
        "image: got array of shape (100, 120, 3) and dtype int64; expected dtype uint8: its values fit, convert with image.astype(np.uint8)",
    ),
    "empty": (
        np.zeros((0, 0, 3), np.uint8),
        "image: got array of shape (0, 0, 3) and dtype uint8, an empty image; expected at least 1x1 pixels",
    ),
    "larger than 16k": (
        np.zeros((16385, 2, 3), np.uint8),
        "image: got array of shape (16385, 2, 3) and dtype uint8; expected at most 16384 pixels on a side",
    ),
    "a 1-pixel strip": (
        np.zeros((1, 3000, 3), np.uint8),
        "image: got array of shape (1, 3000, 3) and dtype uint8; expected sides at most 2048 times longer than each other"
        " (resized to SAM's 1024-pixel input its short side would be 0 pixels)",
    ),
    "a list": ([[[0, 0, 0]]], "image: got list; expected a numpy array HxWx3 of dtype uint8"),
    "a PIL grayscale image": (
        Image.new("L", (120, 100)),
        "image: got a PIL image of 120x100 pixels in mode 'L'; expected mode 'RGB' (use image.convert('RGB'))",
    ),
}

# the dog photo is 800x534 (w x h)
PROMPTS = {
    "point outside": (
        dict(point_coords=np.array([[5000, 10]]), point_labels=np.array([1])),
        "point_coords: has coordinates outside the image: (x, y) = (5000, 10) at point 0 of 800x534 pixels;"
        " expected x in [0, 800] and y in [0, 534] (pixels of the original image)",
    ),
    "negative point": (
        dict(point_coords=np.array([[10, 10], [-1, 10]]), point_labels=np.array([1, 0])),
        "point_coords: has coordinates outside the image: (x, y) = (-1, 10) at point 1",
    ),
    "nan point": (
        dict(point_coords=np.array([[np.nan, 10]]), point_labels=np.array([1])),
        "point_coords: got array of shape (1, 2) and dtype float64 holding NaN or infinity (first at index [0, 0]);"
        " expected finite (x, y) pixel coordinates",
    ),
    "inf point": (
        dict(point_coords=np.array([[10, np.inf]], np.float32), point_labels=np.array([1])),
        "point_coords: got array of shape (1, 2) and dtype float32 holding NaN or infinity (first at index [0, 1])",
    ),
    "label 2": (
        dict(point_coords=np.array([[10, 10]]), point_labels=np.array([2])),
        "point_labels: got values [2.0] in shape (1,); expected 1 (foreground) or 0 (background) (a box goes in box=, not as labels 2 and 3)",
    ),
    "label -1": (
        dict(point_coords=np.array([[10, 10]]), point_labels=np.array([-1])),
        "point_labels: got values [-1.0] in shape (1,); expected 1 (foreground) or 0 (background)",
    ),
    "labels missing": (
        dict(point_coords=np.array([[10, 10]])),
        "point_labels: is required when the other of point_coords/point_labels is given",
    ),
    "one label for two points": (
        dict(point_coords=np.array([[10, 10], [20, 20]]), point_labels=np.array([1])),
        "point_labels: got shape (1,); expected (2,), one label per point",
    ),
    "inverted box": (
        dict(box=np.array([600, 400, 100, 50])),
        "box: got [600.0, 400.0, 100.0, 50.0]; expected x1 > x0 and y1 > y0 (x0, y0 is the top-left corner)",
    ),
    "degenerate box": (dict(box=np.array([100, 100, 100, 300])), "box: got [100.0, 100.0, 100.0, 300.0]; expected x1 > x0 and y1 > y0"),
    "box outside": (
        dict(box=np.array([100, 100, 900, 300])),
        "box: has coordinates outside the image: (x, y) = (900, 300) at point 1 of 800x534 pixels",
    ),
    "box of 3 numbers": (dict(box=np.array([1, 2, 3])), "box: got shape (3,); expected (4,) as (x0, y0, x1, y1)"),
    "too many points": (
        dict(point_coords=np.full((16, 2), 10.0), point_labels=np.ones(16)),
        "point_coords: got 16 points: 17 decoder rows with SAM's 1 padding point; expected at most 16 rows"
        " (the decoder's max_points), so at most 15 points without a box",
    ),
    "too many points with a box": (
        dict(point_coords=np.full((15, 2), 10.0), point_labels=np.ones(15), box=np.array([1, 1, 50, 50])),
        "point_coords: got 15 points and a box: 17 decoder rows with SAM's 2 box corners; expected at most 16 rows"
        " (the decoder's max_points), so at most 14 points with a box",
    ),
    "mask_input of the wrong shape": (
        dict(**PROBE_CLICK, mask_input=np.zeros((256, 256), np.float32)),
        "mask_input: got array of shape (256, 256) and dtype float32; expected shape (1, 256, 256)",
    ),
    "mask_input with nan": (
        dict(**PROBE_CLICK, mask_input=np.full((1, 256, 256), np.nan, np.float32)),
        "mask_input: got array of shape (1, 256, 256) and dtype float32; expected finite float logits",
    ),
    "no prompt": ({}, "point_coords: no prompt given; expected point_coords with point_labels, a box, or both"),
}


@pytest.fixture(scope="module")
def proxied(grpc_url, images):
    """(proxy, client): a gRPC-transport client through a byte-counting proxy, with the dog photo set."""
    host, port = grpc_url.rsplit(":", 1)
    with CountingProxy(host, int(port)) as proxy, SamClient(proxy.url, transport="grpc") as client:
        client.set_image(images["dog"])
        yield proxy, client


def assert_refused_silently(proxy, call, expected: str) -> None:
    """``call()`` raises InvalidInputError holding ``expected``, and nothing went to the server."""
    proxy.reset()
    with pytest.raises(InvalidInputError) as error:
        call()
    assert expected in str(error.value)
    assert proxy.client_to_server < SILENT_BYTES


@pytest.mark.parametrize("case", list(IMAGES))
def test_bad_images_are_refused_before_sending(proxied, case):
    proxy, client = proxied
    image, expected = IMAGES[case]
    assert_refused_silently(proxy, lambda: client.set_image(image), expected)
    assert_refused_silently(proxy, lambda: client.segment(image, **PROBE_CLICK), expected)  # the ensemble's path


@pytest.mark.parametrize("case", list(PROMPTS))
def test_bad_prompts_are_refused_before_sending(proxied, case):
    proxy, client = proxied
    prompt, expected = PROMPTS[case]
    assert_refused_silently(proxy, lambda: client.predict(**prompt), expected)


def test_a_bad_prompt_in_a_batch_is_named_by_its_index(proxied):
    proxy, client = proxied
    assert_refused_silently(
        proxy,
        lambda: client.predict_batch(
            point_coords=[np.array([[10, 10]]), np.array([[10, 10]])], point_labels=[np.array([1]), np.array([3])]
        ),
        "point_labels[1]: got values [3.0] in shape (1,); expected 1 (foreground) or 0 (background)",
    )


def test_predict_before_set_image(grpc_url, images):
    with SamClient(grpc_url, transport="grpc") as client:
        with pytest.raises(NoImageSetError, match=r"An image must be set with \.set_image\(\.\.\.\) before mask prediction\."):
            client.predict(**PROBE_CLICK)
        client.set_image(images["dog"])
        client.reset_image()
        with pytest.raises(NoImageSetError, match=r"before mask prediction"):
            client.predict_batch(**{k: [v] for k, v in PROBE_CLICK.items()})

    async def main():
        async with AsyncSamClient(grpc_url, transport="grpc") as client:
            with pytest.raises(NoImageSetError, match=r"before mask prediction"):
                await client.predict(**PROBE_CLICK)
            with pytest.raises(InvalidInputError, match=r"image: got array of shape \(4, 4\) and dtype uint8; expected HxWx3"):
                await client.set_image(np.zeros((4, 4), np.uint8))

    asyncio.run(main())


def test_a_one_pixel_image_is_segmented(grpc_url):
    """1x1 is a valid image for SAM (SamPredictor takes it: resized to 1024x1024): it is answered."""
    with SamClient(grpc_url, transport="grpc") as client:
        client.set_image(np.full((1, 1, 3), 200, np.uint8))
        masks, scores, logits = client.predict(point_coords=np.array([[0.5, 0.5]]), point_labels=np.array([1]))
    assert masks.shape == (3, 1, 1) and logits.shape == (3, 256, 256) and np.all(np.isfinite(scores))
