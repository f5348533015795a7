"""``SamClient``: SamPredictor's API over Triton's gRPC protocol.

A SAM user switches by changing one line::

    predictor = SamPredictor(sam)           ->   predictor = SamClient("localhost:8001")
    predictor.set_image(image)                    predictor.set_image(image)
    masks, scores, logits = predictor.predict(point_coords=..., point_labels=..., box=...)
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np
import tritonclient.grpc as grpcclient

from .contract import DECODER_MODEL, ENCODER_MODEL, ENSEMBLE_MODEL, IMAGE_EMBEDDINGS, Limits
from .errors import ClientClosedError, NoImageSetError
from .prompts import encode_prompt
from .requests import OUTPUT_NAMES, ImageState, decoder_request, image_request, predictions, prompt_request
from .triton_io import (
    GRPC_CHANNEL_ARGS,
    limits_from_config,
    make_inputs,
    make_outputs,
    read_outputs,
    translated_errors,
)

Result = Tuple[np.ndarray, np.ndarray, np.ndarray]


class SamClient:
    """Segment Anything through a Triton server's ``sam_encoder``, ``sam_decoder`` and ``sam`` models.

    ``url`` is the gRPC address ("host:port"). Every call is bounded by ``timeout_s`` (seconds);
    tritonclient itself has no default timeout. ``limits`` overrides the prompt limits, which are
    otherwise read once from the decoder's config on the server.
    """

    def __init__(self, url: str = "localhost:8001", *, timeout_s: float = 60.0, limits: Optional[Limits] = None) -> None:
        self.url = url
        self.timeout_s = float(timeout_s)
        self._limits = limits
        self._client: Optional[grpcclient.InferenceServerClient] = grpcclient.InferenceServerClient(
            url, channel_args=GRPC_CHANNEL_ARGS
        )
        self.reset_image()

    # -- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        """Close the gRPC channel; the client cannot be used afterwards."""
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def closed(self) -> bool:
        return self._client is None

    def __enter__(self) -> "SamClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _grpc(self) -> grpcclient.InferenceServerClient:
        if self._client is None:
            raise ClientClosedError("this SamClient is closed; create a new one")
        return self._client

    # -- SamPredictor's API -----------------------------------------------------------------
    def reset_image(self) -> None:
        """Forget the current image and its embedding."""
        self._state: Optional[ImageState] = None
        self._embedding: Optional[np.ndarray] = None

    @property
    def is_image_set(self) -> bool:
        return self._embedding is not None

    @property
    def original_size(self) -> Optional[Tuple[int, int]]:
        return None if self._state is None else self._state.original_size

    @property
    def input_size(self) -> Optional[Tuple[int, int]]:
        return None if self._state is None else self._state.input_size

    def set_image(self, image: Any, image_format: str = "RGB") -> None:
        """Embed an HxWx3 uint8 image (RGB, or BGR with ``image_format``) with ``sam_encoder``."""
        state = image_request(image, image_format)
        outputs = self._infer(ENCODER_MODEL, state.encoder_inputs, (IMAGE_EMBEDDINGS.name,))
        self._state = state
        self._embedding = outputs[IMAGE_EMBEDDINGS.name][0]

    def get_image_embedding(self) -> np.ndarray:
        """The current image's embedding, 1x256x64x64 float32 (SamPredictor returns a tensor)."""
        return self._require_image()[1][None]

    def predict(
        self,
        point_coords: Optional[np.ndarray] = None,
        point_labels: Optional[np.ndarray] = None,
        box: Optional[np.ndarray] = None,
        mask_input: Optional[np.ndarray] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> Result:
        """Masks for one prompt on the current image, exactly as ``SamPredictor.predict``.

        point_coords: Nx2 (x, y) in pixels of the original image; point_labels: N of 1 (foreground)
        or 0 (background); box: (x0, y0, x1, y1) in original pixels; mask_input: 1x256x256 logits
        from a previous call. Returns masks CxHxW (bool, or float logits with ``return_logits``),
        iou_predictions C and low-res logits Cx256x256, with C = 3 if ``multimask_output`` else 1.
        """
        state, embedding = self._require_image()
        prompt = encode_prompt(
            state.original_size,
            point_coords=point_coords,
            point_labels=point_labels,
            box=box,
            mask_input=mask_input,
            limits=self.limits,
        )
        outputs = self._infer(DECODER_MODEL, decoder_request(embedding, [prompt]), OUTPUT_NAMES)
        masks, iou, low_res = predictions(outputs, state, multimask_output=multimask_output, return_logits=return_logits)
        return masks[0], iou[0], low_res[0]

    def segment(
        self,
        image: Any,
        point_coords: Optional[np.ndarray] = None,
        point_labels: Optional[np.ndarray] = None,
        box: Optional[np.ndarray] = None,
        mask_input: Optional[np.ndarray] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        image_format: str = "RGB",
    ) -> Result:
        """One request through the ``sam`` ensemble: image and prompt in, ``predict``'s result out.

        Stateless: it neither needs nor changes the image set by ``set_image``.
        """
        state = image_request(image, image_format)
        prompt = encode_prompt(
            state.original_size,
            point_coords=point_coords,
            point_labels=point_labels,
            box=box,
            mask_input=mask_input,
            limits=self.limits,
        )
        arrays = dict(state.encoder_inputs)
        arrays.update(prompt_request([prompt]))
        outputs = self._infer(ENSEMBLE_MODEL, arrays, OUTPUT_NAMES)
        masks, iou, low_res = predictions(outputs, state, multimask_output=multimask_output, return_logits=return_logits)
        return masks[0], iou[0], low_res[0]

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def limits(self) -> Limits:
        """Prompt limits of the served decoder (read from its config on first use)."""
        if self._limits is None:
            with translated_errors(DECODER_MODEL):
                config = self._grpc().get_model_config(DECODER_MODEL, as_json=True, client_timeout=self.timeout_s)
            self._limits = limits_from_config(config.get("config", config))
        return self._limits

    def _require_image(self) -> Tuple[ImageState, np.ndarray]:
        if self._state is None or self._embedding is None:
            raise NoImageSetError("An image must be set with .set_image(...) before mask prediction.")
        return self._state, self._embedding

    def _infer(self, model: str, arrays: Dict[str, np.ndarray], output_names: Tuple[str, ...]) -> Dict[str, np.ndarray]:
        with translated_errors(model):
            result = self._grpc().infer(
                model,
                make_inputs(grpcclient.InferInput, arrays),
                outputs=make_outputs(grpcclient.InferRequestedOutput, output_names),
                client_timeout=self.timeout_s,
            )
        return read_outputs(result, output_names)
