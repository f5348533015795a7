"""The API both clients share, written once: options, local state, and each call as a flow.

``SamClient`` turns every flow-building method below into a blocking method of the same name and
signature, ``AsyncSamClient`` into a coroutine method (``blocking``/``awaitable`` wrappers), so the
two clients cannot drift apart.
"""

from __future__ import annotations

import inspect
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, TypeVar

import numpy as np

from . import flows as predictor_flows
from .amg import generator as automatic
from .amg.generator import MaskGeneratorOptions
from .contract import Limits
from .flows import Prediction
from .predictor.prompt_batches import BatchPrompts
from .predictor.validation import ImageInput
from .transport.channel_options import ChannelOptions
from .transport.core import SamCore
from .transport.ops import Flow, FlowOf, RetryPolicy, Rpc, Sleep

#: How often close() looks whether the calls in flight have ended.
DRAIN_POLL_S = 0.005


Method = TypeVar("Method", bound=Callable[..., Any])


def as_public_method(method: Method, builder: Callable[..., Flow], owner: str) -> Method:
    """Name ``method`` (a wrapper running ``builder``'s flow) as the public call, with its signature."""
    method.__name__ = builder.__name__.lstrip("_")
    method.__qualname__ = f"{owner}.{method.__name__}"
    # typeshed declares no __signature__ on functions, though inspect.signature reads it there
    method.__signature__ = inspect.signature(builder).replace(return_annotation=inspect.Signature.empty)  # type: ignore[attr-defined]
    return method


class SamClientAPI:
    """Options and local state of a client; see ``SamClient`` for the meaning of each option."""

    def __init__(
        self,
        url: str = "localhost:8001",
        *,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 30.0,
        transport: str = "auto",
        retry: Optional[RetryPolicy] = None,
        limits: Optional[Limits] = None,
        cuda_device: int = 0,
        max_regions: int = 16,
        api_key: Optional[str] = None,
        ssl: bool = False,
        root_certificates: Optional[str] = None,
        private_key: Optional[str] = None,
        certificate_chain: Optional[str] = None,
        creds: Any = None,
        keepalive_options: Any = None,
        channel_args: Optional[Sequence[Tuple[str, Any]]] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        channel = ChannelOptions(
            ssl=ssl,
            root_certificates=root_certificates,
            private_key=private_key,
            certificate_chain=certificate_chain,
            creds=creds,
            keepalive_options=keepalive_options,
            channel_args=channel_args,
            headers=headers or {},
        )
        self._core = SamCore(
            url,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            transport=transport,
            retry=retry or RetryPolicy(),
            limits=limits,
            cuda_device=cuda_device,
            max_regions=max_regions,
            api_key=api_key,
            channel=channel,
        )
        self._grpc: Any = None
        self._open_lock = self._make_open_lock()

    @staticmethod
    def _make_open_lock() -> Any:
        raise NotImplementedError  # threading.Lock or asyncio.Lock, by client

    # -- state (no IO) -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self._core.url

    @property
    def timeout_s(self) -> float:
        return self._core.timeout_s

    @property
    def state(self) -> str:
        """ "new" (not connected yet), "open", "closing" or "closed"."""
        return self._core.state

    @property
    def closed(self) -> bool:
        return self._core.state in ("closing", "closed")

    @property
    def transport(self) -> Optional[str]:
        """The transport in use once open: "shm", "cuda" or "grpc" (None before)."""
        return self._core.transport

    @property
    def is_image_set(self) -> bool:
        return self._core.current is not None

    @property
    def original_size(self) -> Optional[Tuple[int, int]]:
        current = self._core.current
        return None if current is None else current.state.original_size

    @property
    def input_size(self) -> Optional[Tuple[int, int]]:
        current = self._core.current
        return None if current is None else current.state.input_size

    def reset_image(self) -> None:
        """Forget the current image; its shared-memory region is reused by the next set_image."""
        self._core.reset_image()

    def get_image_embedding(self) -> np.ndarray:
        """The current image's embedding, 1x256x64x64 float32 (a copy; SamPredictor returns a tensor)."""
        embedded = self._core.hold_current()
        try:
            return np.array(embedded.read())
        finally:
            self._core.release(embedded)

    # -- lifecycle, as flows (the shells make the channel) --------------------------------
    def _open_flow(self) -> Flow:
        """Connect over the channel just made; on failure close it again."""
        try:
            yield from self._core.headed(self._core.open())
        except BaseException:
            yield Rpc("close")
            self._grpc = None
            raise

    def _close_flow(self, timeout_s: Optional[float]) -> Flow:
        """Wait up to ``timeout_s`` for calls in flight, unregister and free the shared memory,
        close the channel. Idempotent."""
        if not self._core.begin_close():
            return
        if self._grpc is None:  # never opened
            self._core.state = "closed"
            return
        deadline = time.monotonic() + self._core.timeout(timeout_s)
        while self._core.in_flight and time.monotonic() < deadline:
            yield Sleep(DRAIN_POLL_S)
        try:
            yield from self._core.headed(self._core.close(deadline))
        finally:
            yield Rpc("close")
            self._grpc = None

    # -- calls, as flows ---------------------------------------------------------------------
    def _set_image(
        self,
        image: ImageInput,
        image_format: str = "RGB",
        *,
        timeout_s: Optional[float] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> FlowOf[None]:
        """Embed an HxWx3 uint8 image (RGB, or BGR with ``image_format``) with ``sam_encoder``.

        With transport "shm"/"cuda" the embedding stays in a region on the server's side of the
        socket; with "grpc" it comes back (4 MB) and is re-sent with each predict. Every call also
        takes ``headers=``: gRPC metadata for its requests, merged over the client's ``headers``.
        """
        return (
            yield from self._core.session(
                predictor_flows.set_image(self._core, image, image_format, self._core.timeout(timeout_s)), headers
            )
        )

    def _predict(
        self,
        point_coords: Optional[np.ndarray] = None,
        point_labels: Optional[np.ndarray] = None,
        box: Optional[np.ndarray] = None,
        mask_input: Optional[np.ndarray] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        *,
        timeout_s: Optional[float] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> FlowOf[Prediction]:
        """Masks for one prompt on the current image, exactly as ``SamPredictor.predict``.

        point_coords: Nx2 (x, y) in pixels of the original image; point_labels: N of 1 (foreground)
        or 0 (background); box: (x0, y0, x1, y1) in original pixels; mask_input: 1x256x256 logits
        from a previous call. Returns masks CxHxW (bool, or float logits with ``return_logits``),
        iou_predictions C and low-res logits Cx256x256, with C = 3 if ``multimask_output`` else 1.
        """
        return (
            yield from self._core.session(
                predictor_flows.predict(
                    self._core,
                    point_coords=point_coords,
                    point_labels=point_labels,
                    box=box,
                    mask_input=mask_input,
                    multimask_output=multimask_output,
                    return_logits=return_logits,
                    timeout_s=self._core.timeout(timeout_s),
                ),
                headers,
            )
        )

    def _predict_batch(
        self,
        point_coords: BatchPrompts = None,
        point_labels: BatchPrompts = None,
        boxes: BatchPrompts = None,
        mask_inputs: BatchPrompts = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        *,
        timeout_s: Optional[float] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> FlowOf[Prediction]:
        """P prompts on the current image in as few requests as the decoder's limits allow.

        point_coords: P arrays Nx2 (N may differ) or a PxNx2 array; point_labels: P arrays of N or
        PxN; boxes: Px4; mask_inputs: Px1x256x256 (each optional; a prompt's entry may be None).
        Returns masks PxCxHxW, iou_predictions PxC, low-res logits PxCx256x256, each prompt's row
        equal to what ``predict`` returns for it. ``timeout_s`` bounds each request.
        """
        return (
            yield from self._core.session(
                predictor_flows.predict_batch(
                    self._core,
                    point_coords=point_coords,
                    point_labels=point_labels,
                    boxes=boxes,
                    mask_inputs=mask_inputs,
                    multimask_output=multimask_output,
                    return_logits=return_logits,
                    timeout_s=self._core.timeout(timeout_s),
                ),
                headers,
            )
        )

    def _segment(
        self,
        image: ImageInput,
        point_coords: Optional[np.ndarray] = None,
        point_labels: Optional[np.ndarray] = None,
        box: Optional[np.ndarray] = None,
        mask_input: Optional[np.ndarray] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        image_format: str = "RGB",
        *,
        timeout_s: Optional[float] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> FlowOf[Prediction]:
        """One request through the ``sam`` ensemble: image and prompt in, ``predict``'s result out.

        Stateless: it neither needs nor changes the image set by ``set_image``.
        """
        return (
            yield from self._core.session(
                predictor_flows.segment(
                    self._core,
                    image,
                    point_coords=point_coords,
                    point_labels=point_labels,
                    box=box,
                    mask_input=mask_input,
                    multimask_output=multimask_output,
                    return_logits=return_logits,
                    image_format=image_format,
                    timeout_s=self._core.timeout(timeout_s),
                ),
                headers,
            )
        )

    def _generate(
        self,
        image: ImageInput,
        options: Optional[MaskGeneratorOptions] = None,
        *,
        timeout_s: Optional[float] = None,
        headers: Optional[Mapping[str, str]] = None,
        **overrides: Any,
    ) -> FlowOf[List[Dict[str, Any]]]:
        """All masks of an HxWx3 uint8 RGB image, as ``SamAutomaticMaskGenerator.generate``.

        Options are ``MaskGeneratorOptions`` (or its fields as keywords: points_per_side=32,
        points_per_batch=64, pred_iou_thresh=0.88, stability_score_thresh=0.95,
        stability_score_offset=1.0, box_nms_thresh=0.7, crop_n_layers=0, crop_nms_thresh=0.7,
        crop_overlap_ratio, crop_n_points_downscale_factor=1, point_grids, min_mask_region_area=0,
        output_mode="binary_mask"|"uncompressed_rle"|"coco_rle"). Returns one dict per mask:
        segmentation, area, bbox [x, y, w, h], predicted_iou, point_coords [[x, y]],
        stability_score, crop_box [x, y, w, h]. One embedding per crop; stateless (the current
        image is untouched). ``timeout_s`` bounds each request.
        """
        chosen = automatic.generate_options(options, overrides)
        return (yield from self._core.session(automatic.generate(self._core, image, chosen, self._core.timeout(timeout_s)), headers))
