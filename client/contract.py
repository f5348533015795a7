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
SESSION_MODEL = "sam_session"


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
    dtype: str  # Triton's name: "UINT8", "INT32", "FP32", "BOOL", "BYTES"
    dims: Tuple[int, ...]
    axis_names: Tuple[str, ...] = ()
    doc: str = ""
    optional: bool = False  # config.pbtxt ``optional: true``: a request may leave it out

    @property
    def numpy_dtype(self) -> str:
        return {"UINT8": "uint8", "INT32": "int32", "FP32": "float32", "BOOL": "bool", "BYTES": "object"}[self.dtype]


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

# sam_session: server-side sessions (README "Sessions"). One python-backend model, no batch dim
# (max_batch_size 0); which inputs a request carries depends on its ``op``.

#: The operations of sam_session (the BYTES input ``op``).
OP_OPEN = "open"
OP_PREDICT = "predict"
OP_CLOSE = "close"
SESSION_OPS = (OP_OPEN, OP_PREDICT, OP_CLOSE)
#: A session id: ``secrets.token_hex(SESSION_ID_BYTES)``, minted by the server (128 random bits).
SESSION_ID_BYTES = 16
#: The gRPC metadata header carrying a session's routing key (random per session, minted by the
#: client, sent with every call of the session, open included): a gateway hashes on it
#: (deploy/kubernetes/base/gateway/envoy.yaml), so all its calls reach the replica holding its embedding.
ROUTE_HEADER = "sam-route"
#: ``mask_input`` value of the session transport's ``predict``: refine with the session's previous mask
#: (the low-res logits of the best-scoring mask of the last predict); the client sends it to sam_session
#: as the BOOL input ``use_previous_mask``, so a refinement uploads nothing.
PREVIOUS_MASK = "previous"
#: First byte of each encoded mask in ``masks``: COCO RLE (pycocotools' compressed counts string,
#: column-major) or np.packbits of the row-major HxW mask; the server sends the smaller.
MASK_RLE = b"R"
MASK_BITS = b"B"
#: Store defaults (config.pbtxt parameters ``store_bytes``, ``idle_ttl_s``, ``max_image_pixels``):
#: 2 GiB hold ~480 sessions (4 MiB embedding + 256 KiB logits each) and fit a 24 GiB machine beside
#: the models; an idle session lives 15 minutes; a decoded image may hold at most 64 megapixels.
DEFAULT_STORE_BYTES = 2 * 2**30
DEFAULT_IDLE_TTL_S = 900.0
DEFAULT_MAX_IMAGE_PIXELS = 64_000_000
#: sam_session's worker threads (config.pbtxt parameters ``open_workers``, ``click_workers``): opens
#: (an upload decoded, then sam_encoder) and clicks (predict, close: sam_decoder and the postprocess)
#: run on lanes of their own, so a click never waits for an open ahead of it; 0 click workers runs
#: every operation inside execute, one at a time (docs/studies/sessions_load.md measures both).
DEFAULT_SESSION_OPEN_WORKERS = 1
DEFAULT_SESSION_CLICK_WORKERS = 2

OP = TensorSpec("op", "BYTES", (1,), doc="open, predict or close")
SESSION_ID = TensorSpec("session_id", "BYTES", (1,), doc="the id open returned (32 hex digits)", optional=True)
IMAGE_FILE = TensorSpec("image_file", "BYTES", (1,), doc="open: a JPEG, PNG or WebP file", optional=True)
ORIGINAL_SIZE = TensorSpec(
    "original_size",
    "INT32",
    (2,),
    doc="open: (H, W) of the photo when image_file holds SAM's resized image (longest side 1024); out: the photo's (H, W)",
    optional=True,
)
SESSION_POINT_COORDS = TensorSpec("point_coords", "FP32", (-1, -1, 2), doc=POINT_COORDS.doc, optional=True)
SESSION_POINT_LABELS = TensorSpec("point_labels", "FP32", (-1, -1), doc=POINT_LABELS.doc, optional=True)
SESSION_MASK_INPUT = TensorSpec("mask_input", "FP32", (-1, 1, LOW_RES_SIZE, LOW_RES_SIZE), doc=MASK_INPUT.doc, optional=True)
SESSION_HAS_MASK_INPUT = TensorSpec("has_mask_input", "FP32", (-1,), doc=HAS_MASK_INPUT.doc, optional=True)
USE_PREVIOUS_MASK = TensorSpec("use_previous_mask", "BOOL", (1,), doc="refine every prompt with the previous mask", optional=True)
MULTIMASK_OUTPUT = TensorSpec(
    "multimask_output", "BOOL", (1,), doc="true: masks 1..3; false: mask 0; absent: all 4 as sam_decoder", optional=True
)
RETURN_MASKS = TensorSpec("return_masks", "BOOL", (1,), doc="encoded full-size masks back (default true)", optional=True)
RETURN_LOGITS = TensorSpec("return_logits", "BOOL", (1,), doc="low-res logits back (default false)", optional=True)
SESSION_INPUT_SIZE = TensorSpec("input_size", "INT32", (2,), doc=INPUT_SIZE.doc)
SESSION_IOU = TensorSpec("iou_predictions", "FP32", (-1, -1), doc="P x C predicted IoU")
MASKS = TensorSpec("masks", "BYTES", (-1, -1), doc="P x C masks of the photo's size, each MASK_RLE or MASK_BITS + payload")
SESSION_LOGITS = TensorSpec("low_res_masks", "FP32", (-1, -1, LOW_RES_SIZE, LOW_RES_SIZE), doc="P x C low-res logits")

SESSION_INPUTS = (
    OP,
    SESSION_ID,
    IMAGE_FILE,
    ORIGINAL_SIZE,
    SESSION_POINT_COORDS,
    SESSION_POINT_LABELS,
    SESSION_MASK_INPUT,
    SESSION_HAS_MASK_INPUT,
    USE_PREVIOUS_MASK,
    MULTIMASK_OUTPUT,
    RETURN_MASKS,
    RETURN_LOGITS,
)
SESSION_OUTPUTS = (
    TensorSpec("session_id", "BYTES", (1,), doc="open: the new session's id"),
    TensorSpec("original_size", "INT32", (2,), doc="open: the photo's (H, W)"),
    SESSION_INPUT_SIZE,
    SESSION_IOU,
    MASKS,
    SESSION_LOGITS,
)
#: What each op answers with (the rest of SESSION_OUTPUTS it leaves out).
OPEN_OUTPUTS = ("session_id", "original_size", "input_size")
CLOSE_OUTPUTS = ("session_id",)
