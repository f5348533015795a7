"""Server-side sessions (sam_session) through a real tritonserver: the same answers as the gRPC
transport, compact replies, re-opens after an eviction, an expiry and a restart, a store that
stays under its cap, isolated clients, and bad uploads refused with the server staying READY.

One module server: the tiny preset's python repository with a store of 3 sessions and a 6 s TTL.
"""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import struct
import threading
import time
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sam_triton.build.repository.assemble import DEFAULT_ENCODER_NICE, RepositoryOptions, assemble
from sam_triton.build.repository.session_store import LOGITS_SLOT_BYTES
from sam_triton.client import (
    AsyncSamClient,
    InvalidInputError,
    InvalidRequestError,
    ModelNotFoundError,
    PreviousMaskLostError,
    SamClient,
)
from sam_triton.client.contract import EMBED_DIM, EMBED_SIZE, PREVIOUS_MASK, ROUTE_HEADER, SESSION_MODEL
from sam_triton.perf.soak.process_tree import descendants
from sam_triton.perf.studies.wire_proxy import CountingProxy

from .conftest import IMAGES_DIR, serving

SESSION_BYTES = 4 * EMBED_DIM * EMBED_SIZE * EMBED_SIZE + LOGITS_SLOT_BYTES
CAPACITY = 3
TTL_S = 6.0
CLICK = dict(point_coords=np.array([[500, 375]]), point_labels=np.array([1]))


@pytest.fixture(scope="module")
def session_server(request, tmp_path_factory, tiny_onnx, cache_dir):
    repository = tmp_path_factory.mktemp("sessions") / "model_repository"
    options = RepositoryOptions(runtime="python", session_store_bytes=CAPACITY * SESSION_BYTES, session_idle_ttl_s=TTL_S)
    assemble(repository, options, onnx_dir=tiny_onnx[0])
    yield from serving(request, repository, cache_dir, tmp_path_factory.mktemp("logs") / "sessions.log")


@pytest.fixture(scope="module")
def url(session_server):
    return session_server.config.grpc_url


def metrics(server):
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.config.metrics_port}/metrics", timeout=10).read().decode()
    return {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("sam_session_")}


def raw(client, **arrays):
    """One sam_session request past the client's own checks, to reach the server's."""
    encoded = {
        k: np.array([v.encode() if isinstance(v, str) else v], np.object_) if isinstance(v, (str, bytes)) else v for k, v in arrays.items()
    }
    outputs = ("session_id",) if arrays["op"] != "predict" else ("iou_predictions",)
    return client._infer(SESSION_MODEL, encoded, outputs)


def open_raw(client, data):
    return raw(client, op="open", image_file=data)["session_id"][0].decode()


def png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_masks_and_scores_equal_the_grpc_transport(url, images):
    image = images["truck"]
    h, w = image.shape[:2]
    batch = dict(
        point_coords=[np.array([[w * 0.3, h * 0.4]]), np.array([[w * 0.6, h * 0.5], [w * 0.1, h * 0.1]])],
        point_labels=[np.array([1]), np.array([1, 0])],
    )
    with SamClient(url, transport="grpc") as plain, SamClient(url, transport="session") as client:
        plain.set_image(image)
        client.set_image(image)
        assert client.transport == "session" and len(client.session_id) == 32
        for kwargs in (CLICK, dict(box=np.array([50, 40, w - 60, h - 30]), multimask_output=False)):
            masks, iou, logits = client.predict(**kwargs)
            want = plain.predict(**kwargs)
            assert masks.dtype == bool and masks.shape == want[0].shape and np.mean(masks == want[0]) >= 0.999
            np.testing.assert_allclose(iou, want[1], atol=1e-4)
            assert logits is None  # not asked for: 256 KB a mask
        client.predict(**CLICK)
        masks, iou, _ = client.predict(**CLICK, mask_input=PREVIOUS_MASK)  # refine with the click's best mask: uploads nothing
        first = plain.predict(**CLICK)
        want = plain.predict(**CLICK, mask_input=first[2][np.argmax(first[1])][None])
        assert np.mean(masks == want[0]) >= 0.999 and np.allclose(iou, want[1], atol=1e-4)
        got, want = client.predict_batch(**batch), plain.predict_batch(**batch)
        assert got[0].shape == want[0].shape and np.mean(got[0] == want[0]) >= 0.999
        np.testing.assert_allclose(got[1], want[1], atol=1e-4)
        float_masks, _, _ = client.predict(**CLICK, return_logits=True)
        np.testing.assert_allclose(float_masks, plain.predict(**CLICK, return_logits=True)[0], atol=1e-4)
        assert client.reopens == 0


def test_set_image_file_and_session_logits(url, images):
    with SamClient(url, transport="grpc") as plain, SamClient(url, transport="session", session_logits=True) as client:
        plain.set_image(images["dog"])
        client.set_image_file(IMAGES_DIR / "dog.jpg")  # sent as it is: the server decodes the JPEG
        assert client.original_size == images["dog"].shape[:2]
        masks, iou, logits = client.predict(**CLICK)
        want = plain.predict(**CLICK)
        assert np.mean(masks == want[0]) >= 0.999 and np.allclose(iou, want[1], atol=1e-4)
        np.testing.assert_allclose(logits, want[2], atol=1e-4)
        with pytest.raises(InvalidInputError, match="image_file: empty"):
            client.set_image_file(b"")


def test_a_click_does_not_wait_for_an_open_ahead_of_it(url, images):
    """sam_session's lanes: while an open waits for a busy sam_encoder (kept busy by gRPC clients'
    set_image), clicks on another session (sam_decoder only) started after it are answered before it."""
    stop = threading.Event()

    def keep_the_encoder_busy():
        with SamClient(url, transport="grpc") as busy:
            while not stop.is_set():
                busy.set_image(images["dog"])

    opened = {}

    def open_one():
        with SamClient(url, transport="session") as opener:
            opened["start"] = time.perf_counter()
            opener.set_image_file(IMAGES_DIR / "truck.jpg")
            opened["end"] = time.perf_counter()

    busy = [threading.Thread(target=keep_the_encoder_busy) for _ in range(3)]
    opener = threading.Thread(target=open_one)
    clicks = []
    with SamClient(url, transport="session") as clicker:
        clicker.set_image(images["groceries"])
        clicker.predict(**CLICK)
        try:
            for thread in busy:
                thread.start()
            time.sleep(1.0)  # the encoder's queue is full
            opener.start()
            while opener.is_alive():
                start = time.perf_counter()
                clicker.predict(**CLICK)
                clicks.append((start, time.perf_counter()))
        finally:
            stop.set()
            for thread in [*busy, opener]:
                thread.join(120)
    assert "end" in opened, "the open failed"
    during = [c for c in clicks if c[0] > opened["start"] + 0.1 and c[1] < opened["end"]]
    assert during, f"no click answered during a {opened['end'] - opened['start']:.2f} s open: {clicks}"


def thread_nice_values(pid):
    """The nice value of each thread of a process (/proc/<pid>/task/<tid>/stat, field 19)."""
    values = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        values.append(int(task.joinpath("stat").read_text().rsplit(")", 1)[1].split()[16]))
    return values


def test_the_encoder_yields_the_cpu_to_clicks(session_server):
    """On a CPU python runtime the encoder's stub runs its inference at the default nice value (its
    health thread, started before initialize, at the server's), sam_session's at the server's."""
    stubs = {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in descendants(session_server.process.pid)}
    encoder = next(pid for pid, cmd in stubs.items() if b"/sam_encoder/" in cmd)
    session = next(pid for pid, cmd in stubs.items() if f"/{SESSION_MODEL}/".encode() in cmd)
    assert DEFAULT_ENCODER_NICE in thread_nice_values(encoder) and 0 in thread_nice_values(encoder)
    assert set(thread_nice_values(session)) == {0}


def test_a_click_is_a_few_kilobytes_and_carries_the_route_header(url, images, caplog):
    host, port = url.rsplit(":", 1)
    with CountingProxy(host, int(port)) as proxy, SamClient(proxy.url, transport="session") as client:
        client.set_image(images["truck"])
        proxy.reset()
        client.predict(**CLICK)
        assert proxy.client_to_server <= 4096
        # the tiny preset's random weights draw noisy masks (bit-packed, 270 KB each): the bound is the encoding
        h, w = images["truck"].shape[:2]
        assert proxy.server_to_client <= 3 * (h * w // 8 + 64) + 4096
    seen = []

    def record(self, *args, **kwargs):
        seen.append(kwargs.get("headers"))
        return original(self, *args, **kwargs)

    import tritonclient.grpc as grpcclient

    original = grpcclient.InferenceServerClient.infer
    with pytest.MonkeyPatch.context() as patch, SamClient(url, transport="session") as client:
        patch.setattr(grpcclient.InferenceServerClient, "infer", record)
        client.set_image(images["dog"])
        client.predict(**CLICK)
        client.set_image(images["groceries"])  # then closes the dog's session, in that session's route
    # open, predict (dog); open (groceries), close (dog); close (groceries, on client close)
    routes = [h[ROUTE_HEADER] for h in seen]
    assert len(routes) == 5 and routes[0] == routes[1] == routes[3] != routes[2] == routes[4] and len(routes[0]) == 32


def test_an_evicted_session_is_reopened_transparently(session_server, url, images, caplog):
    with SamClient(url, transport="session") as client, SamClient(url, transport="grpc") as plain:
        client.set_image(images["dog"])
        plain.set_image(images["dog"])
        lost = client.session_id
        evictions = metrics(session_server)["sam_session_evictions_total"]
        tiny = png(np.zeros((32, 32, 3), np.uint8))
        for _ in range(CAPACITY):
            open_raw(plain, tiny)
        assert metrics(session_server)["sam_session_sessions"] <= CAPACITY
        with caplog.at_level(logging.WARNING, logger="sam_triton.client.transport.sessions"):
            masks, iou, _ = client.predict(**CLICK)
        assert client.reopens == 1 and client.session_id != lost and f"session {lost} was gone" in caplog.text
        want = plain.predict(**CLICK)
        assert np.mean(masks == want[0]) >= 0.999 and np.allclose(iou, want[1], atol=1e-4)
        assert metrics(session_server)["sam_session_evictions_total"] > evictions


def test_a_refinement_that_meets_a_lost_session_says_its_previous_mask_is_gone(session_server, url, images):
    with SamClient(url, transport="session") as client, SamClient(url, transport="grpc") as plain:
        client.set_image(images["truck"])
        client.predict(**CLICK)
        tiny = png(np.zeros((32, 32, 3), np.uint8))
        for _ in range(CAPACITY):  # evicts the truck's session
            open_raw(plain, tiny)
        with pytest.raises(PreviousMaskLostError, match="its previous mask went with it"):
            client.predict(**CLICK, mask_input=PREVIOUS_MASK)
        assert client.reopens == 1
        masks, _, _ = client.predict(**CLICK)  # the re-opened session answers the next click
        assert masks.shape[1:] == images["truck"].shape[:2] and client.reopens == 1


def test_the_cap_holds_whatever_the_number_of_opens(session_server, url):
    tiny = png(np.full((40, 30, 3), 7, np.uint8))
    with SamClient(url, transport="grpc") as client:
        for _ in range(3 * CAPACITY):
            open_raw(client, tiny)
            figures = metrics(session_server)
            assert figures["sam_session_sessions"] <= CAPACITY and figures["sam_session_bytes"] <= CAPACITY * SESSION_BYTES


def test_closing_one_clients_session_spares_anothers_and_random_ids_are_refused(url, images):
    with SamClient(url, transport="session") as a, SamClient(url, transport="session") as b, SamClient(url, transport="grpc") as plain:
        a.set_image(images["dog"])
        b.set_image(images["groceries"])
        assert a.session_id != b.session_id
        plain.set_image(images["dog"])
        want = plain.predict(**CLICK)
        b.close()  # closes b's session only
        got = a.predict(**CLICK)
        assert np.mean(got[0] == want[0]) >= 0.999 and a.reopens == 0
        guessed = "%032x" % int.from_bytes(np.random.default_rng(5).bytes(16), "big")
        with pytest.raises(ModelNotFoundError, match=f"session '{guessed}' is unknown or expired"):
            raw(
                plain,
                op="predict",
                session_id=guessed,
                point_coords=np.zeros((1, 1, 2), np.float32),
                point_labels=np.ones((1, 1), np.float32),
            )
        with pytest.raises(InvalidRequestError, match=r"input 'op': 'list'; expected one of \['open', 'predict', 'close'\]"):
            raw(plain, op="list")


def test_an_expired_id_gets_the_documented_error_and_the_client_reopens(url, images):
    with SamClient(url, transport="session") as client, SamClient(url, transport="grpc") as plain:
        client.set_image(images["groceries"])
        expired = client.session_id
        time.sleep(TTL_S + 1)
        with pytest.raises(
            ModelNotFoundError, match=rf"session '{expired}' is unknown or expired \(closed, evicted .* idle for more than 6 s"
        ):
            raw(
                plain,
                op="predict",
                session_id=expired,
                point_coords=np.zeros((1, 1, 2), np.float32),
                point_labels=np.ones((1, 1), np.float32),
            )
        client.predict(**CLICK)
        assert client.reopens == 1


def bomb_png(width, height):
    """A valid PNG signature and IHDR claiming width x height, with one tiny IDAT: a few dozen bytes."""

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "data, error",
    [
        (b"", "input 'image_file': empty"),
        (b"not an image at all", r"input 'image_file': cannot decode \(UnidentifiedImageError"),
        ((IMAGES_DIR / "dog.jpg").read_bytes()[:5000], r"input 'image_file': cannot decode \(OSError"),
        (bomb_png(12000, 12000), r"input 'image_file': 12000x12000 = 144000000 pixels; at most 64000000 \(max_image_pixels\)"),
        (bomb_png(30000, 30000), r"input 'image_file': Image size \(900000000 pixels\) exceeds limit"),
    ],
    ids=["empty", "garbage", "truncated", "bomb", "huge-bomb"],
)
def test_bad_uploads_are_refused_and_the_server_stays_ready(url, data, error):
    with SamClient(url, transport="grpc") as client:
        with pytest.raises(InvalidRequestError, match=error):
            raw(client, op="open", image_file=data)
        assert client._grpc.is_server_ready() and client._grpc.is_model_ready(SESSION_MODEL)


def test_bad_ids_and_prompts_are_refused(url, images):
    with SamClient(url, transport="session") as client:
        client.set_image(images["dog"])
        session_id = client.session_id
        point = dict(point_labels=np.ones((1, 1), np.float32))
        with pytest.raises(InvalidRequestError, match=r"input 'session_id': '\.\./etc' is not a session id; expected the 32 hex digits"):
            raw(client, op="predict", session_id="../etc", point_coords=np.zeros((1, 1, 2), np.float32), **point)
        with pytest.raises(InvalidRequestError, match=r"input 'point_coords': points outside the resized image; expected x in \[0, 1024\]"):
            raw(client, op="predict", session_id=session_id, point_coords=np.full((1, 1, 2), 5000, np.float32), **point)
        with pytest.raises(InvalidRequestError, match=r"input 'point_coords': 65 prompts of 1 points; expected 1\.\.64"):
            raw(
                client,
                op="predict",
                session_id=session_id,
                point_coords=np.zeros((65, 1, 2), np.float32),
                point_labels=np.ones((65, 1), np.float32),
            )
        with pytest.raises(InvalidRequestError, match="input 'point_coords': missing"):
            raw(client, op="predict", session_id=session_id)
        with pytest.raises(InvalidRequestError, match="input 'use_previous_mask': this session has no previous mask"):
            raw(
                client,
                op="predict",
                session_id=session_id,
                point_coords=np.zeros((1, 1, 2), np.float32),
                use_previous_mask=np.array([True]),
                **point,
            )
        assert client.predict(**CLICK)[0].shape == (3, *images["dog"].shape[:2])  # still serving


def test_generate_uploads_the_image_once(url, images):
    opened = []
    with SamClient(url, transport="session") as client, SamClient(url, transport="grpc") as plain:
        core = client._core
        original = core.open_session
        core.open_session = lambda *args, **kwargs: (opened.append(1), (yield from original(*args, **kwargs)))[1]
        options = dict(points_per_side=3, pred_iou_thresh=0.0, stability_score_thresh=0.0)
        got, want = client.generate(images["dog"], **options), plain.generate(images["dog"], **options)
    assert len(opened) == 1 and len(got) == len(want)
    for a, b in zip(got, want):
        assert np.mean(a["segmentation"] == b["segmentation"]) >= 0.999 and abs(a["predicted_iou"] - b["predicted_iou"]) < 1e-4


def outward_address():
    """This host's address on its default route (a UDP connect sends nothing), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 9))
            return probe.getsockname()[0]
        except OSError:
            return None


def test_the_async_client_and_auto_on_a_remote_address(url, images):
    async def run():
        async with AsyncSamClient(url, transport="session") as client:
            await client.set_image(images["dog"])
            return await client.predict(**CLICK)

    masks, iou, _ = asyncio.run(run())
    with SamClient(url, transport="grpc") as plain:
        plain.set_image(images["dog"])
        want = plain.predict(**CLICK)
    assert np.mean(masks == want[0]) >= 0.999 and np.allclose(iou, want[1], atol=1e-4)
    address = outward_address()
    if address is None or address.startswith("127."):
        pytest.skip("this host has no address but loopback")
    host, port = url.rsplit(":", 1)
    with CountingProxy(host, int(port), listen_host=address) as proxy, SamClient(proxy.url) as client:
        assert client.transport == "session"


def test_a_set_image_during_a_long_predict_batch_closes_the_old_session_after_it(url, images):
    """AsyncSamClient: a set_image while predict_batch still has requests to send on the old
    image's session closes that session once predict_batch is done, not under it (no re-open)."""
    grid = np.stack(np.meshgrid(np.linspace(50, 750, 12), np.linspace(50, 480, 8)), -1).reshape(-1, 1, 2)  # 2 requests
    finished = []

    async def run():
        async with AsyncSamClient(url, transport="session") as client:
            await client.set_image(images["dog"])
            old = client._core.current.session.session_id

            async def long_batch():
                result = await client.predict_batch(point_coords=grid, point_labels=np.ones((len(grid), 1)), multimask_output=False)
                finished.append("predict_batch")
                return result

            async def replace_image():
                await asyncio.sleep(0.2)
                await client.set_image(images["groceries"])
                finished.append("set_image")

            (masks, iou, _), _ = await asyncio.gather(long_batch(), replace_image())
            return client.reopens, old, masks, iou

    reopens, old, masks, iou = asyncio.run(run())
    assert finished == ["set_image", "predict_batch"], "the set_image did not land during predict_batch"
    assert reopens == 0 and masks.shape == (96, 1, 534, 800) and iou.shape == (96, 1)
    with SamClient(url, transport="grpc") as client, pytest.raises(ModelNotFoundError, match=f"session '{old}' is unknown"):
        raw(client, op="close", session_id=old)  # closed after predict_batch


def test_a_restarted_server_is_survived_transparently(session_server, url, images):
    with SamClient(url, transport="session", connect_timeout_s=120) as client, SamClient(url, transport="grpc") as plain:
        client.set_image(images["truck"])
        plain.set_image(images["truck"])
        want = plain.predict(**CLICK)
        session_server.stop()
        session_server.start()
        masks, iou, _ = client.predict(**CLICK)
        assert client.reopens == 1
        assert np.mean(masks == want[0]) >= 0.999 and np.allclose(iou, want[1], atol=1e-4)
