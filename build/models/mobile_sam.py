"""MobileSAM (``vit_t``): SAM's prompt encoder and mask decoder behind a 6 M-parameter TinyViT encoder.

The architecture comes from PyPI's ``mobilesam-mirror`` (the ``mobile_sam`` package, MobileSAM's
own code), as ViT-B/L/H come from ``segment_anything``; nothing of it is copied here. Its reference
predictor is ``mobile_sam.SamPredictor``. Importing it registers TinyViT models in timm's registry
(over timm's own of the same name) and trips timm's deprecation warnings: both are silenced.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Tuple

#: the one TinyViT configuration MobileSAM ships (``build_sam_vit_t``)
MODEL_TYPE = "vit_t"
#: a key only TinyViT encoders have (their first patch-embedding convolution)
SIGNATURE_KEY = "image_encoder.patch_embed.seq.0.c.weight"


@dataclass(frozen=True, kw_only=True)
class TinyVitShape:
    """TinyViT's stage widths and depths (MobileSAM's 5M configuration)."""

    embed_dims: Tuple[int, ...] = (64, 128, 160, 320)
    depths: Tuple[int, ...] = (2, 2, 6, 2)


def _module():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # timm's deprecations, and "Overwriting tiny_vit_5m_224 in registry"
        import mobile_sam
    return mobile_sam


def build() -> object:
    """MobileSAM's Sam with torch's default (seeded by the caller) initialization."""
    try:
        mobile_sam = _module()
    except ImportError as exc:
        raise RuntimeError("model type vit_t needs MobileSAM: pip install 'sam-triton[build]' (mobilesam-mirror and timm)") from exc
    return mobile_sam.sam_model_registry[MODEL_TYPE]()


def is_mobile_sam(sam) -> bool:
    return type(sam.image_encoder).__name__ == "TinyViT"


def predictor(sam):
    """The reference SamPredictor of ``sam``: MobileSAM's for vit_t, segment-anything's otherwise."""
    if is_mobile_sam(sam):
        return _module().SamPredictor(sam)
    from segment_anything import SamPredictor

    return SamPredictor(sam)


def shape_of(state_dict) -> TinyVitShape:
    """The TinyViT stage widths and depths of a state dict's ``image_encoder.layers.*`` weights."""
    dims, depths = [], []
    stage = 0
    while any(k.startswith(f"image_encoder.layers.{stage}.") for k in state_dict):
        blocks = {int(k.split(".")[4]) for k in state_dict if k.startswith(f"image_encoder.layers.{stage}.blocks.")}
        depths.append(max(blocks) + 1 if blocks else 0)
        stage += 1
    first = state_dict[SIGNATURE_KEY]
    dims.append(int(first.shape[0]) * 2)  # the stem's first conv has half the first stage's width
    for i in range(1, stage):
        norm = state_dict.get(f"image_encoder.layers.{i}.blocks.0.attn.norm.weight")
        dims.append(int(norm.shape[0]) if norm is not None else 0)
    return TinyVitShape(embed_dims=tuple(dims), depths=tuple(depths))


def traceable_encoder(encoder):
    """A copy of a TinyViT encoder that traces with a dynamic batch.

    TinyViT's PatchMerging takes ``B = len(x)`` of its token input, which the tracer records as the
    tracing batch's constant; a pre-hook hands it the tokens already as (B, C, H, W), shaped from
    ``x.shape[0]`` (which the tracer keeps symbolic), so its own reshape is skipped. Same numbers.
    """
    import copy

    encoder = copy.deepcopy(encoder)
    for module in encoder.modules():
        if type(module).__name__ == "PatchMerging":
            module.register_forward_pre_hook(_tokens_to_image)
    return encoder


def _tokens_to_image(module, args):
    (x,) = args
    if x.ndim != 3:
        return None
    height, width = module.input_resolution
    return (x.reshape(x.shape[0], height, width, x.shape[2]).permute(0, 3, 1, 2),)
