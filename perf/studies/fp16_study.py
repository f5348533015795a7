"""FP16 fidelity study: which layers must stay FP32 for SAM's graphs to keep their answers?

TensorRT is not installable where this project is developed, so the study uses PyTorch CUDA half
precision as the stand-in for TensorRT FP16, on the very modules we export (SamEncoderGraph,
SamDecoderGraph), and compares each variant with FP32 on the real photos:

- encoder: image-embedding relative L2 error;
- end to end (variant encoder -> variant decoder): low-res logits relative L2 error, absolute
  IoU-prediction error, and IoU of the full-resolution masks with FP32's (Sam.postprocess_masks,
  threshold 0) for one point, fg/bg points, a box and box + point.

Variants keep named groups in FP32: ``layernorm`` (nn.LayerNorm and SAM's hand-written
LayerNorm2d), ``attention`` (q.k logits, relative positions and softmax), ``prompt_pe`` (the
random-Fourier point encoding of the prompt encoder), ``decoder`` (the whole decoder).

Needs a CUDA GPU. Run: ``python -m sam_triton.perf.studies.fp16_study --models vit_b vit_h --out DIR``
(``--models`` also takes checkpoint paths, e.g. ``sam_vit_h_4b8939.pth``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
import types
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Sequence, Tuple

import numpy as np

if TYPE_CHECKING:
    from sam_triton.build.export.onnx_modules import SamDecoderGraph, SamEncoderGraph

log = logging.getLogger(__name__)

VARIANTS: Dict[str, Sequence[str]] = {
    "fp16": (),
    "fp16+layernorm": ("layernorm",),
    "fp16+attention": ("attention",),
    "fp16+layernorm+attention": ("layernorm", "attention"),
    "fp16+layernorm+attention+prompt_pe": ("layernorm", "attention", "prompt_pe"),
    "fp16 encoder+layernorm, fp32 decoder": ("layernorm", "decoder"),
}
IMAGES = ("truck", "dog", "groceries")


def keep_fp32(module, method: str = "forward") -> None:
    """Run ``module.<method>`` in FP32 inside a half-precision model: cast in, compute, cast back."""
    import torch

    original = getattr(type(module), method)
    module.float()

    def fp32_method(self, *args):
        dtype = args[0].dtype
        out = original(self, *[a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args])
        return out.to(dtype)

    setattr(module, method, types.MethodType(fp32_method, module))


def _wrap_layernorms(model) -> None:
    import torch
    from segment_anything.modeling.common import LayerNorm2d

    for module in list(model.modules()):
        if isinstance(module, (torch.nn.LayerNorm, LayerNorm2d)):
            keep_fp32(module)


def _encoder_attention_fp32(self, x):
    """segment_anything.modeling.image_encoder.Attention.forward with logits and softmax in FP32."""
    from segment_anything.modeling.image_encoder import add_decomposed_rel_pos

    B, H, W, _ = x.shape
    qkv = self.qkv(x).reshape(B, H * W, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.reshape(3, B * self.num_heads, H * W, -1).unbind(0)
    attn = (q.float() * self.scale) @ k.float().transpose(-2, -1)
    if self.use_rel_pos:
        attn = add_decomposed_rel_pos(attn, q.float(), self.rel_pos_h.float(), self.rel_pos_w.float(), (H, W), (H, W))
    attn = attn.softmax(dim=-1).to(v.dtype)
    x = (attn @ v).view(B, self.num_heads, H, W, -1).permute(0, 2, 3, 1, 4).reshape(B, H, W, -1)
    return self.proj(x)


def _decoder_attention_fp32(self, q, k, v):
    """segment_anything.modeling.transformer.Attention.forward with logits and softmax in FP32."""
    import torch

    q, k, v = self.q_proj(q), self.k_proj(k), self.v_proj(v)
    q, k, v = (self._separate_heads(t, self.num_heads) for t in (q, k, v))
    attn = q.float() @ k.float().permute(0, 1, 3, 2) / math.sqrt(q.shape[-1])
    attn = torch.softmax(attn, dim=-1).to(v.dtype)
    return self.out_proj(self._recombine_heads(attn @ v))


def make_variant(sam_fp32, groups: Sequence[str], dtype) -> Tuple[SamEncoderGraph, SamDecoderGraph]:
    """A ``dtype`` (half) copy of ``sam_fp32`` with ``groups`` kept in FP32: (encoder_graph, decoder_graph)."""
    import copy

    from segment_anything.modeling import image_encoder, transformer

    from sam_triton.build.export.onnx_modules import SamDecoderGraph, SamEncoderGraph

    sam = copy.deepcopy(sam_fp32)
    # Built in FP32 first, so constants (the dense positional encoding) are computed in FP32 and
    # then rounded to half, as TensorRT rounds an FP32 ONNX constant.
    encoder, decoder = SamEncoderGraph(sam).eval().to(dtype), SamDecoderGraph(sam).eval()
    if "decoder" not in groups:
        decoder.to(dtype)
    if "layernorm" in groups:
        _wrap_layernorms(encoder if "decoder" in groups else sam)
    if "attention" in groups:
        for module in sam.modules():
            if isinstance(module, image_encoder.Attention):
                module.forward = types.MethodType(_encoder_attention_fp32, module)
            elif isinstance(module, transformer.Attention) and "decoder" not in groups:
                module.forward = types.MethodType(_decoder_attention_fp32, module)
    if "prompt_pe" in groups:
        keep_fp32(sam.prompt_encoder.pe_layer, "_pe_encoding")
    return encoder, decoder


def _prompts(height: int, width: int) -> Dict[str, dict]:
    from sam_triton.build.export.verify import check_prompts

    return check_prompts(height, width)


def run_pipeline(encoder, decoder, image: np.ndarray, prompts: Dict[str, dict], device) -> Dict[str, np.ndarray]:
    """Embedding and, per prompt, (iou 4, low-res logits 4x256x256, full-res masks 4xHxW bool)."""
    import torch

    from sam_triton.client.contract import DEFAULT_LIMITS
    from sam_triton.client.predictor.prompts import encode_prompt, stack_prompts
    from sam_triton.client.predictor.transforms import postprocess_masks, prepare_image

    padded, input_size = prepare_image(image)
    decoder_dtype = next(decoder.parameters()).dtype
    encoder_dtype = next(encoder.parameters()).dtype
    with torch.no_grad():
        x = encoder.preprocess(torch.from_numpy(padded[None]).to(device), torch.from_numpy(input_size[None]).to(device))
        embedding = encoder.image_encoder(x.to(encoder_dtype))
        out = {"embedding": embedding.float().cpu().numpy()}
        for name, prompt in prompts.items():
            arrays = stack_prompts([encode_prompt(image.shape[:2], limits=DEFAULT_LIMITS, **prompt)])
            feed = [
                torch.from_numpy(arrays[k][None]).to(device).to(decoder_dtype)
                for k in ("point_coords", "point_labels", "mask_input", "has_mask_input")
            ]
            iou, logits = decoder(embedding.to(decoder_dtype), *feed)
            logits = logits.float().cpu().numpy()[0, 0]
            out[name] = (iou.float().cpu().numpy()[0, 0], logits, postprocess_masks(logits, tuple(input_size), image.shape[:2]) > 0)
    return out


def compare(variant: dict, reference: dict) -> dict:
    from sam_triton.build.export.verify import mask_iou, rel_l2

    rows = {"embedding_rel_l2": rel_l2(variant["embedding"], reference["embedding"])}
    logits_err: List[float] = []
    iou_err: List[float] = []
    mask_ious: List[float] = []
    for name in reference:
        if name == "embedding":
            continue
        iou, logits, masks = reference[name]
        v_iou, v_logits, v_masks = variant[name]
        logits_err.append(rel_l2(v_logits, logits))
        iou_err.append(float(np.max(np.abs(v_iou - iou))))
        mask_ious.extend(mask_iou(v_masks[i], masks[i]) for i in range(masks.shape[0]))
    rows.update(
        logits_rel_l2_max=max(logits_err),
        iou_abs_max=max(iou_err),
        mask_iou_min=min(mask_ious),
        mask_iou_mean=float(np.mean(mask_ious)),
    )
    return rows


def _synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def encoder_latency_ms(encoder, device, repeats: int = 10) -> float:
    import torch

    dtype = next(encoder.parameters()).dtype
    x = torch.zeros((1, 3, 1024, 1024), device=device, dtype=dtype)
    with torch.no_grad():
        for _ in range(3):
            encoder.image_encoder(x)
        _synchronize(device)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            encoder.image_encoder(x)
            _synchronize(device)
            times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def layernorm_input_absmax(encoder, image: np.ndarray, device) -> float:
    """The largest |x| entering any LayerNorm of the encoder in FP32: FP16 overflows past 65504,
    and LayerNorm's variance (x squared) past |x| = 256."""
    import torch
    from segment_anything.modeling.common import LayerNorm2d

    from sam_triton.client.predictor.transforms import prepare_image

    seen = []
    hooks = [
        m.register_forward_pre_hook(lambda _m, args: seen.append(float(args[0].abs().max())))
        for m in encoder.modules()
        if isinstance(m, (torch.nn.LayerNorm, LayerNorm2d))
    ]
    padded, input_size = prepare_image(image)
    with torch.no_grad():
        encoder(torch.from_numpy(padded[None]).to(device), torch.from_numpy(input_size[None]).to(device))
    for hook in hooks:
        hook.remove()
    return max(seen)


def decoder_latency_ms(decoder, device, prompts: int = 64, repeats: int = 10) -> float:
    """One decoder call with ``prompts`` single-click prompts (the automatic-mask batch size)."""
    import torch

    dtype = next(decoder.parameters()).dtype
    args = [
        torch.zeros(shape, device=device, dtype=dtype)
        for shape in ((1, 256, 64, 64), (1, prompts, 2, 2), (1, prompts, 2), (1, prompts, 1, 256, 256), (1, prompts))
    ]
    with torch.no_grad():
        for _ in range(3):
            decoder(*args)
        _synchronize(device)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            decoder(*args)
            _synchronize(device)
            times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def study(model_types: Sequence[str], images: Dict[str, np.ndarray], device, dtype) -> List[dict]:
    from sam_triton.build.export.onnx_modules import SamDecoderGraph, SamEncoderGraph
    from sam_triton.build.export.pipeline import ModelChoice

    rows = []
    for model_type in model_types:
        sam = ModelChoice.parse(model_type).load().to(device)
        reference_graphs = (SamEncoderGraph(sam).eval(), SamDecoderGraph(sam).eval())
        references = {name: run_pipeline(*reference_graphs, image, _prompts(*image.shape[:2]), device) for name, image in images.items()}
        rows.append(
            {
                "model": model_type,
                "variant": "fp32",
                "encoder_ms_pytorch": encoder_latency_ms(reference_graphs[0], device),
                "decoder64_ms_pytorch": decoder_latency_ms(reference_graphs[1], device),
                "layernorm_input_absmax": max(layernorm_input_absmax(reference_graphs[0], image, device) for image in images.values()),
            }
        )
        for variant, groups in VARIANTS.items():
            graphs = make_variant(sam, groups, dtype)
            per_image = [
                compare(run_pipeline(*graphs, image, _prompts(*image.shape[:2]), device), references[name])
                for name, image in images.items()
            ]
            row = {
                "model": model_type,
                "variant": variant,
                "fp32_groups": list(groups),
                "encoder_ms_pytorch": encoder_latency_ms(graphs[0], device),
                "decoder64_ms_pytorch": decoder_latency_ms(graphs[1], device),
            }
            for key in per_image[0]:
                values = [p[key] for p in per_image]
                row[key] = min(values) if key.endswith("_min") else (float(np.mean(values)) if key.endswith("_mean") else max(values))
            rows.append(row)
            log.info("%s %s: %s", model_type, variant, row)
        del sam, reference_graphs
    return rows


def markdown(rows: List[dict], device_name: str) -> str:
    lines = [
        f"Reduced-precision study on {device_name} (PyTorch as the stand-in for TensorRT; seeded random weights;"
        f" photos {', '.join(IMAGES)}; prompts: one point, fg/bg points, box, box + point)",
        "",
        "| model | variant (kept FP32) | embedding rel L2 | logits rel L2 (max) | IoU-pred err (max) | mask IoU min | mask IoU mean | encoder ms | decoder ms, 64 prompts |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["variant"] == "fp32":
            lines.append(
                f"| {r['model']} | fp32 (reference; LayerNorm input max abs {r['layernorm_input_absmax']:.1f}) | - | - | - | - | - |"
                f" {r['encoder_ms_pytorch']:.1f} | {r['decoder64_ms_pytorch']:.1f} |"
            )
            continue
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['embedding_rel_l2']:.2e} | {r['logits_rel_l2_max']:.2e} | "
            f"{r['iou_abs_max']:.2e} | {r['mask_iou_min']:.4f} | {r['mask_iou_mean']:.4f} | {r['encoder_ms_pytorch']:.1f} |"
            f" {r['decoder64_ms_pytorch']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    import torch

    from sam_triton.client.images import load_image

    parser = argparse.ArgumentParser(description="Measure SAM's FP16 error per kept-FP32 layer group (needs a CUDA GPU).")
    parser.add_argument(
        "--models", nargs="+", default=["vit_b", "vit_h"], help="Presets (seeded random weights) or SAM checkpoint paths to study."
    )
    parser.add_argument("--images", type=Path, default=Path("tests/images"), help="Folder holding truck.jpg, dog.jpg, groceries.jpg.")
    parser.add_argument("--out", type=Path, required=True, help="Where to write fp16_study.json and fp16_study.md.")
    parser.add_argument(
        "--device", default="cuda", help="The torch device; cpu only for a smoke test (CPU half is not what TensorRT runs)."
    )
    parser.add_argument(
        "--dtype",
        choices=["float16", "bfloat16"],
        default="float16",
        help="The reduced precision to study (float16 is TensorRT's FP16; bfloat16 runs fast on CPUs with AMX).",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("fp16_study needs a CUDA GPU (or --device cpu for a smoke test)")
    images = {name: load_image(args.images / f"{name}.jpg") for name in IMAGES}
    rows = study(args.models, images, device, getattr(torch, args.dtype))
    device_name = (torch.cuda.get_device_name() if device.type == "cuda" else "CPU") + f", {args.dtype}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fp16_study.json").write_text(json.dumps({"device": device_name, "torch": torch.__version__, "rows": rows}, indent=2))
    (args.out / "fp16_study.md").write_text(markdown(rows, device_name))
    print(markdown(rows, device_name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
