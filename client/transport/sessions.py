"""Transport "session": the image is uploaded once, compressed, and its embedding stays in the
server's ``sam_session`` store; a click sends its prompt and gets scores and compact masks back.

These flows run over ``SamCore`` (see ``core``). Each session has a random routing key, sent as
the gRPC header ``contract.ROUTE_HEADER`` with every call of the session (open included), so a
gateway hashing on it sends them all to one replica. A call that meets NOT_FOUND (the session was
evicted, expired, or the server restarted or is another replica) re-opens the session once from
the upload the client kept, counts it (``SamCore.reopens``, a log line) and is sent again; a second
NOT_FOUND in a row raises ``SessionNotFoundError``.
"""

from __future__ import annotations

import io
import logging
import secrets
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from ..contract import (
    CLOSE_OUTPUTS,
    IMAGE_SIZE,
    OP_CLOSE,
    OP_OPEN,
    OP_PREDICT,
    OPEN_OUTPUTS,
    ROUTE_HEADER,
    SESSION_MODEL,
    USE_PREVIOUS_MASK,
)
from ..errors import PreviousMaskLostError, ServerError, SessionNotFoundError
from ..mask_codec import decode_mask
from ..predictor.prompts import DecoderPrompt, stack_prompts
from ..predictor.transforms import resize_image
from ..predictor.validation import check_image
from .ops import Flow, with_headers

log = logging.getLogger(__name__)

#: zlib level of the PNG set_image uploads: level 1 is ~10x faster than 6 for a few % more bytes.
PNG_COMPRESS_LEVEL = 1


@dataclass(frozen=True)
class Upload:
    """What ``open`` sends: an encoded image file, and the photo's (H, W) when the file holds
    SAM's resized image of it (None: the file is the photo)."""

    data: bytes
    original_size: Optional[Tuple[int, int]] = None


@dataclass
class SessionRef:
    """A session on the server: its id (replaced by a re-open), its routing key, its upload.

    ``holders`` counts who uses it (the current image, each call in flight on it; ``SamCore``'s
    hold_current/release); a session let go of (``forgotten``) is closed once none is left, so
    a set_image during a long predict_batch does not close the session under that call."""

    session_id: str
    route: str
    upload: Upload
    holders: int = 1  # the hold of whoever opened it
    forgotten: bool = False


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def image_upload(image: object, image_format: str = "RGB") -> Upload:
    """An HxWx3 uint8 image -> a lossless PNG of the fewer pixels: SAM's resized image (longest
    side 1024) when the photo is larger, else the photo itself. Either way the server's encoder
    gets exactly the pixels ``prepare_image`` would give it here (docs/studies/sessions.md
    measures both sizes on the shared photos)."""
    array = check_image(image)
    if image_format == "BGR":
        array = np.ascontiguousarray(array[..., ::-1])
    height, width = int(array.shape[0]), int(array.shape[1])
    if max(height, width) > IMAGE_SIZE:
        return Upload(png_bytes(resize_image(array)), (height, width))
    return Upload(png_bytes(np.ascontiguousarray(array)))


def resized_upload(resized: np.ndarray, original_size: Tuple[int, int]) -> Upload:
    """SAM's resized image (what the encoder gets, unpadded) as an upload for that photo."""
    return Upload(png_bytes(np.ascontiguousarray(resized)), (int(original_size[0]), int(original_size[1])))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SessionFlows:
    """The session transport's calls, mixed into ``SamCore`` (``infer``, ``timeout_s``, ``reopens``)."""

    reopens: int
    sessions_to_close: List[SessionRef]

    def open_session(self, upload: Upload, timeout_s: float, route: Optional[str] = None) -> Flow:
        """``op=open``: returns (SessionRef, original_size, input_size)."""
        route = route or secrets.token_hex(16)
        arrays: Dict[str, np.ndarray] = {"op": np.array([OP_OPEN.encode()], np.object_), "image_file": np.array([upload.data], np.object_)}
        if upload.original_size is not None:
            arrays["original_size"] = np.array(upload.original_size, np.int32)
        outputs = yield from with_headers(self.infer(SESSION_MODEL, arrays, OPEN_OUTPUTS, timeout_s), {ROUTE_HEADER: route})  # type: ignore[attr-defined]
        ref = SessionRef(_text(outputs["session_id"][0]), route, upload)
        return ref, tuple(int(v) for v in outputs["original_size"]), tuple(int(v) for v in outputs["input_size"])

    def session_call(self, ref: SessionRef, op: str, arrays: Dict[str, np.ndarray], outputs: Sequence[str], timeout_s: float) -> Flow:
        """One call on a session, re-opening it once if the server no longer holds it."""
        for attempt in range(2):
            request = {"op": np.array([op.encode()], np.object_), "session_id": np.array([ref.session_id.encode()], np.object_), **arrays}
            try:
                return (yield from with_headers(self.infer(SESSION_MODEL, request, tuple(outputs), timeout_s), {ROUTE_HEADER: ref.route}))  # type: ignore[attr-defined]
            except ServerError as exc:
                if exc.status != "NOT_FOUND" or op == OP_CLOSE:
                    raise
                if attempt:
                    raise SessionNotFoundError(
                        f"session {ref.session_id} was not found right after it was re-opened: {exc.detail}",
                        model=SESSION_MODEL,
                        status=exc.status,
                    ) from exc
                lost = ref.session_id
                reopened, _, _ = yield from self.open_session(ref.upload, timeout_s, ref.route)
                ref.session_id = reopened.session_id
                self.reopens += 1
                log.warning("session %s was gone from the server (%s); re-opened it as %s", lost, exc.detail, ref.session_id)
                if USE_PREVIOUS_MASK.name in arrays:
                    # the previous mask lived on the server with the lost session: a retry would refine with nothing
                    raise PreviousMaskLostError(
                        f"session {lost} was gone from the server ({exc.detail}) and is re-opened as {ref.session_id},"
                        " but its previous mask went with it: predict again without mask_input='previous' (or pass"
                        " the low-res logits you hold as mask_input)",
                        model=SESSION_MODEL,
                        status=exc.status,
                    ) from exc
        raise AssertionError("unreachable")

    def close_session(self, ref: SessionRef, timeout_s: float) -> Flow:
        """``op=close``, best effort: a session the server no longer holds, or a server gone, is fine."""
        try:
            yield from self.session_call(ref, OP_CLOSE, {}, CLOSE_OUTPUTS, timeout_s)
        except ServerError as exc:
            log.debug("closing session %s: %s", ref.session_id, exc)

    def close_forgotten(self, timeout_s: float) -> Flow:
        """Close the sessions of images the client let go of (``reset_image``, a replaced image)."""
        while True:
            try:
                ref = self.sessions_to_close.pop(0)
            except IndexError:  # none left (another thread may have taken the last)
                return
            yield from self.close_session(ref, timeout_s)

    def session_predict(
        self,
        ref: SessionRef,
        prompts: Sequence[DecoderPrompt],
        timeout_s: float,
        *,
        multimask_output: Optional[bool],
        use_previous_mask: bool = False,
        masks: bool = True,
        logits: bool = False,
    ) -> Flow:
        """``op=predict`` for P prompts (one request): returns the server's outputs (iou PxC,
        encoded masks PxC when ``masks``, low-res logits PxCx256x256 when ``logits``);
        ``multimask_output`` None asks for all 4 of the decoder's outputs."""
        has_mask = any(p.has_mask_input for p in prompts)
        arrays = {k: v for k, v in stack_prompts(prompts, mask_input=has_mask).items() if has_mask or k != "has_mask_input"}
        if use_previous_mask:
            arrays["use_previous_mask"] = np.array([True])
        if multimask_output is not None:
            arrays["multimask_output"] = np.array([bool(multimask_output)])
        arrays["return_masks"] = np.array([masks])
        arrays["return_logits"] = np.array([logits])
        names = ["iou_predictions"] + (["masks"] if masks else []) + (["low_res_masks"] if logits else [])
        return (yield from self.session_call(ref, OP_PREDICT, arrays, names, timeout_s))


def decode_masks(encoded: np.ndarray, original_size: Tuple[int, int]) -> np.ndarray:
    """PxC encoded masks -> PxCxHxW bool."""
    height, width = original_size
    out = np.empty((*encoded.shape, height, width), np.bool_)
    for index in np.ndindex(*encoded.shape):
        out[index] = decode_mask(bytes(encoded[index]), (height, width))
    return out
