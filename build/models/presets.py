"""SAM models by name: Meta's ViT-B/L/H, MobileSAM's vit_t and our tiny test preset, from a checkpoint or seeded weights.

One registry maps each name to its encoder shape, as segment-anything's ``sam_model_registry``
does; the tiny preset is the real architecture (same prompt encoder and mask decoder, a 2-block
ViT encoder) so tests run the real graph in seconds. ``vit_t`` is MobileSAM (TinyViT encoder,
SAM's prompt encoder and mask decoder), built by the ``mobile_sam`` package (``mobile_sam.py``).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

from . import mobile_sam

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class EncoderShape:
    """The ViT image encoder's size; everything else in SAM is fixed."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: Tuple[int, ...]


PRESETS: Dict[str, Union[EncoderShape, mobile_sam.TinyVitShape]] = {
    "tiny": EncoderShape(embed_dim=64, depth=2, num_heads=2, global_attn_indexes=(1,)),
    "vit_b": EncoderShape(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11)),
    "vit_l": EncoderShape(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)),
    "vit_h": EncoderShape(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31)),
    mobile_sam.MODEL_TYPE: mobile_sam.TinyVitShape(),
}

DEFAULT_SEED = 0


@dataclass(frozen=True)
class ModelSource:
    """Where a model's weights came from: a checkpoint file (with its sha256) or a seeded preset."""

    model_type: str
    checkpoint: Optional[Path] = None
    checkpoint_sha256: Optional[str] = None
    seed: Optional[int] = None

    @property
    def description(self) -> str:
        if self.checkpoint is not None:
            return f"{self.model_type} from {self.checkpoint}"
        return f"{self.model_type} with seeded random weights (seed {self.seed})"

    @property
    def weights_id(self) -> str:
        """A stable id of the weights, for caches and engine metadata."""
        if self.checkpoint_sha256:
            return f"sha256:{self.checkpoint_sha256}"
        return f"preset:{self.model_type}:seed{self.seed}"


def _build(shape):
    if isinstance(shape, mobile_sam.TinyVitShape):
        return mobile_sam.build()
    from segment_anything.build_sam import _build_sam  # the constructor behind sam_model_registry

    return _build_sam(
        encoder_embed_dim=shape.embed_dim,
        encoder_depth=shape.depth,
        encoder_num_heads=shape.num_heads,
        encoder_global_attn_indexes=list(shape.global_attn_indexes),
        checkpoint=None,
    )


def build_random(model_type: str, *, seed: int = DEFAULT_SEED):
    """A SAM of the given preset with reproducible random weights (torch's default init, seeded)."""
    import torch

    shape = _shape(model_type)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = _build(shape)
    return sam.eval()


def sha256_of(path: Path) -> str:
    """The file's SHA-256, read once per version of the file (a ViT-H checkpoint is 2.4 GB, and
    export, engine building and model loading all ask for it)."""
    stat = Path(path).stat()
    return _sha256_of(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _sha256_of(path: str, _size: int, _mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def infer_model_type(state_dict) -> str:
    """The preset whose encoder matches a checkpoint's ``image_encoder`` weights."""
    if mobile_sam.SIGNATURE_KEY in state_dict:
        found = mobile_sam.shape_of(state_dict)
        if found != PRESETS[mobile_sam.MODEL_TYPE]:
            raise ValueError(
                f"checkpoint: a TinyViT encoder of widths {found.embed_dims} and depths {found.depths}; MobileSAM's vit_t has {PRESETS[mobile_sam.MODEL_TYPE]}"
            )
        return mobile_sam.MODEL_TYPE
    pos_embed = state_dict.get("image_encoder.pos_embed")
    if pos_embed is None:
        raise ValueError(
            "checkpoint: no 'image_encoder.pos_embed' weight; expected a SAM state dict (as sam_vit_b_01ec64.pth) or MobileSAM's (mobile_sam.pt)"
        )
    embed_dim = int(pos_embed.shape[-1])
    blocks = {int(k.split(".")[2]) for k in state_dict if k.startswith("image_encoder.blocks.")}
    depth = max(blocks) + 1 if blocks else 0
    for name, shape in PRESETS.items():
        if isinstance(shape, EncoderShape) and shape.embed_dim == embed_dim and shape.depth == depth:
            return name
    raise ValueError(f"checkpoint: encoder of width {embed_dim} and depth {depth} matches none of {sorted(PRESETS)}")


def load_checkpoint(path: Path, model_type: Optional[str] = None) -> Tuple[object, ModelSource]:
    """Load an official-format SAM checkpoint (.pth state dict); the model type is inferred unless given."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: {path} does not exist")
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    inferred = infer_model_type(state_dict)
    if model_type is not None and model_type != inferred:
        raise ValueError(f"--model-type {model_type} does not match the checkpoint {path}, which holds a {inferred}")
    sam = _build(PRESETS[inferred])
    sam.load_state_dict(state_dict)
    return sam.eval(), ModelSource(inferred, checkpoint=path, checkpoint_sha256=sha256_of(path))


def load_model(*, checkpoint: Optional[Path] = None, model_type: Optional[str] = None, seed: int = DEFAULT_SEED):
    """A checkpoint if given, else the seeded preset ``model_type``; returns (sam, ModelSource)."""
    if checkpoint is not None:
        return load_checkpoint(checkpoint, model_type)
    if model_type is None:
        raise ValueError("either a checkpoint or a preset (--preset tiny|vit_t|vit_b|vit_l|vit_h) is required")
    return build_random(model_type, seed=seed), ModelSource(model_type, seed=seed)


def save_random_checkpoint(model_type: str, path: Path, *, seed: int = DEFAULT_SEED) -> Path:
    """Write a seeded preset as an official-format state dict (for tests and for `--checkpoint`)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(build_random(model_type, seed=seed).state_dict(), path)
    return path


def _shape(model_type: str):
    try:
        return PRESETS[model_type]
    except KeyError:
        raise ValueError(f"model type {model_type!r}: expected one of {sorted(PRESETS)}") from None
