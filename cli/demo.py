"""`sam-triton demo`: the whole flow on the embedded CPU server, from a checkpoint to mask files."""

from __future__ import annotations

import argparse
from pathlib import Path

from sam_triton.build.models.checkpoints import MOBILE_SAM_FILES, OFFICIAL_FILES
from sam_triton.build.models.presets import DEFAULT_SEED, PRESETS
from sam_triton.build.repository.assemble import DEFAULT_RUNTIME, RUNTIMES

from . import arguments as a

OFFICIAL = {**OFFICIAL_FILES, **MOBILE_SAM_FILES}  # the model types with a downloadable checkpoint
EMBEDDED_RUNTIMES = sorted(name for name, spec in RUNTIMES.items() if spec.python_model)  # what the embedded server runs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument(
        "--checkpoint", type=Path, help="A SAM or MobileSAM checkpoint (default: $SAM_CHECKPOINT, else the official one of --model-type)."
    )
    weights.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="Seeded random weights of this architecture instead of a checkpoint (tests; the masks are meaningless).",
    )
    parser.add_argument(
        "--model-type",
        choices=sorted(OFFICIAL),
        default="vit_b",
        help="The official checkpoint downloaded when neither --checkpoint nor $SAM_CHECKPOINT is given (default: Meta's vit_b; vit_t is MobileSAM's); offline, seeded random weights of this type.",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="The seed of --preset's random weights.")
    parser.add_argument("--image", type=Path, help="The photo to segment (default: scikit-image's cat photo).")
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="The directory for masks, overlays and scores.")
    a.add_repository_argument(parser, "The model repository to build and serve.")
    parser.add_argument(
        "--runtime",
        choices=EMBEDDED_RUNTIMES,
        default=DEFAULT_RUNTIME,
        help=f"The embedded server's runtime (default: {DEFAULT_RUNTIME}): openvino runs the encoder on OpenVINO, python runs both models on ONNX Runtime.",
    )
    a.add_precision_argument(parser, runtimes=EMBEDDED_RUNTIMES, default="fp32")
    a.add_cache_argument(parser)


def run(args: argparse.Namespace) -> int:
    from sam_triton.build.demo import DemoConfig, run_demo

    a.check_precision(args)
    if args.precision == "bf16":
        from sam_triton.build.repository.openvino_options import require_native_bf16

        require_native_bf16()
    summaries = run_demo(
        DemoConfig(
            out_dir=args.out,
            repository=args.repository,
            cache_dir=a.cache_dir(args),
            checkpoint=args.checkpoint,
            preset=args.preset,
            seed=args.seed,
            model_type=args.model_type,
            image=args.image,
            runtime=args.runtime,
            precision=args.precision,
        )
    )
    first = summaries.pop("time_to_first_mask")
    weights = f"{args.preset} (random weights)" if args.preset else (args.checkpoint.name if args.checkpoint else args.model_type)
    print(
        f"time to first mask ({weights}, {args.runtime} {args.precision}): {first['seconds']:.2f} s (opening the photo {first['open_s']:.2f} s, the decoder"
        f" {first['decoder_s']:.3f} s: {100 * first['decoder_share']:.1f} %)"
    )
    for name, summary in summaries.items():
        scores = ", ".join(f"{s:.4f}" for s in summary["scores"])
        print(f"{name} prompt: predicted IoU {scores}; overlay {summary['overlay']}")
    return 0
