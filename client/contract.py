"""The tensor contract shared by the export, the model repository and the client.

This module owns the numbers that shape everything: the image size, the embedding shape, the
batch and prompt limits. ONNX dynamic axes, config.pbtxt dims and TensorRT optimization
profiles are all derived from here, so they cannot disagree. It imports nothing but the standard
library, so the light client can use it too.

Shapes below are per request item; Triton adds the batch dim in front (``max_batch_size > 0``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

#: SAM's encoder input: the longest image side is resized to this, then zero-padded to a square.
IMAGE_SIZE = 1024
#: The image embedding: 256 channels on a 64x64 grid (1024 / patch size 16).
EMBED_DIM = 256
EMBED_SIZE = 64
#: The decoder's low-resolution mask logits (and the ``mask_input`` it accepts): 256x256.
LOW_RES_SIZE = 256
#: The decoder always returns 4 masks: index 0 is SAM's single-mask output, 1..3 the multimask ones.
NUM_MASK_OUTPUTS = 4

#: Point labels, as in SAM's prompt encoder and its ONNX export.
LABEL_PADDING = -1
LABEL_BACKGROUND = 0
LABEL_FOREGROUND = 1
LABEL_BOX_TOP_LEFT = 2
LABEL_BOX_BOTTOM_RIGHT = 3
#: Every point label and what it means (the python models' error messages name them).
LABEL_MEANINGS = {
    LABEL_PADDING: "padding",
    LABEL_BACKGROUND: "background",
    LABEL_FOREGROUND: "foreground",
    LABEL_BOX_TOP_LEFT: "box top-left",
    LABEL_BOX_BOTTOM_RIGHT: "box bottom-right",
}

#: Triton's model names.
ENCODER_MODEL = "sam_encoder"
DECODER_MODEL = "sam_decoder"
ENSEMBLE_MODEL = "sam"
#: The gRPC header a gateway routes on: the client sends one key per session with every call of it,
#: so all its calls reach the replica that holds its embedding (deploy/kubernetes/base/gateway/envoy.yaml).
ROUTE_HEADER = "sam-route"


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Batch and prompt limits: the one place config dims and optimization profiles come from.

    ``max_batch_size`` is Triton's batch dim (requests merged by dynamic batching).
    ``max_prompts`` is P, the prompts for one embedding in one request item.
    ``max_points`` is N, the points per prompt (a box counts as two points, the padding point as
    one), so a prompt can hold ``max_points - 2`` clicks plus a box.
    ``opt_*`` are the shapes TensorRT optimizes for (the common single click or box).
    """

    max_batch_size: int = 8
    max_prompts: int = 64
    max_points: int = 16
    opt_batch_size: int = 1
    opt_prompts: int = 1
    opt_points: int = 2

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_prompts", "max_points"):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_points < 2:
            raise ValueError(f"Limits.max_points must be >= 2 (a box is two points), got {self.max_points}")
        for opt, top in (("opt_batch_size", "max_batch_size"), ("opt_prompts", "max_prompts"), ("opt_points", "max_points")):
            if not 1 <= getattr(self, opt) <= getattr(self, top):
                raise ValueError(f"Limits.{opt} must lie in [1, {top}={getattr(self, top)}], got {getattr(self, opt)}")


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model: name, Triton dtype, and dims without the batch dim.

    A dim of -1 is variable; ``axis_names`` names each variable dim (ONNX dynamic axes).
    """

    name: str
    dtype: str  # Triton's name: "UINT8", "INT32", "FP32"
    dims: Tuple[int, ...]
    axis_names: Tuple[str, ...] = ()
    doc: str = ""

    @property
    def numpy_dtype(self) -> str:
        return {"UINT8": "uint8", "INT32": "int32", "FP32": "float32"}[self.dtype]


# sam_encoder
IMAGE = TensorSpec(
    "image",
    "UINT8",
    (IMAGE_SIZE, IMAGE_SIZE, 3),
    doc="RGB, resized so the longest side is 1024 (SAM's ResizeLongestSide), zero-padded at bottom and right",
)
INPUT_SIZE = TensorSpec(
    "input_size",
    "INT32",
    (2,),
    doc="(h, w) of the resized image before padding, each in [1, 1024]",
)
IMAGE_EMBEDDINGS = TensorSpec(
    "image_embeddings",
    "FP32",
    (EMBED_DIM, EMBED_SIZE, EMBED_SIZE),
    doc="SAM's image embedding",
)

# sam_decoder: P prompts of N points each, for one embedding
POINT_COORDS = TensorSpec(
    "point_coords",
    "FP32",
    (-1, -1, 2),
    ("prompts", "points"),
    doc="(x, y) in pixels of the resized 1024 frame (the client applies ResizeLongestSide to coordinates)",
)
POINT_LABELS = TensorSpec(
    "point_labels",
    "FP32",
    (-1, -1),
    ("prompts", "points"),
    doc="1 foreground, 0 background, 2 box top-left, 3 box bottom-right, -1 padding point",
)
MASK_INPUT = TensorSpec(
    "mask_input",
    "FP32",
    (-1, 1, LOW_RES_SIZE, LOW_RES_SIZE),
    ("prompts",),
    doc="previous low-res mask logits, or zeros",
)
HAS_MASK_INPUT = TensorSpec(
    "has_mask_input",
    "FP32",
    (-1,),
    ("prompts",),
    doc="1 where mask_input holds a previous mask, else 0",
)
IOU_PREDICTIONS = TensorSpec(
    "iou_predictions",
    "FP32",
    (-1, NUM_MASK_OUTPUTS),
    ("prompts",),
    doc="predicted IoU of each mask",
)
LOW_RES_MASKS = TensorSpec(
    "low_res_masks",
    "FP32",
    (-1, NUM_MASK_OUTPUTS, LOW_RES_SIZE, LOW_RES_SIZE),
    ("prompts",),
    doc="mask logits in the 256x256 frame of the padded 1024 image; index 0 single-mask, 1..3 multimask",
)

ENCODER_INPUTS = (IMAGE, INPUT_SIZE)
ENCODER_OUTPUTS = (IMAGE_EMBEDDINGS,)
PROMPT_INPUTS = (POINT_COORDS, POINT_LABELS, MASK_INPUT, HAS_MASK_INPUT)
DECODER_INPUTS = (IMAGE_EMBEDDINGS,) + PROMPT_INPUTS
DECODER_OUTPUTS = (IOU_PREDICTIONS, LOW_RES_MASKS)
ENSEMBLE_INPUTS = ENCODER_INPUTS + PROMPT_INPUTS
ENSEMBLE_OUTPUTS = DECODER_OUTPUTS
