"""`sam-triton export` and `sam-triton build`: ONNX graphs checked against SamPredictor, and a model
repository for a runtime."""

from __future__ import annotations

import argparse
from pathlib import Path

from sam_triton.build.repository.assemble import DEFAULT_RUNTIME, RUNTIMES

from . import arguments as a


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    a.add_model_arguments(parser)
    parser.add_argument(
        "--out", type=Path, required=True, help="The directory to write sam_encoder.onnx, sam_decoder.onnx and manifest.json into."
    )


def run_export(args: argparse.Namespace) -> int:
    from sam_triton.build.export.pipeline import prepare_onnx

    out, manifest = prepare_onnx(
        a.model_choice(args), cache_dir=Path(args.out), onnx_dir=args.out, check_image=args.image, check=not args.skip_check, force=True
    )
    print(f"wrote {out / 'sam_encoder.onnx'}, {out / 'sam_decoder.onnx'} and {out / 'manifest.json'}")
    if "check" in manifest:
        check = manifest["check"]
        print(
            f"ONNX Runtime vs SamPredictor on {check['image']}: embedding rel L2 {check['embedding_rel_l2']:.2e},"
            f" worst logits rel L2 {max(check['logits_rel_l2'].values()):.2e}, worst IoU error {max(check['iou_abs'].values()):.2e}"
        )
    return 0


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    a.add_model_arguments(parser)
    a.add_cache_argument(parser)
    a.add_limit_arguments(parser)
    parser.add_argument(
        "--runtime",
        choices=sorted(RUNTIMES),
        default=DEFAULT_RUNTIME,
        help=f"The models' runtime (default: {DEFAULT_RUNTIME}). openvino: python-backend models running OpenVINO, the embedded CPU default; python: python-backend models running ONNX Runtime; onnxruntime and openvino-backend: Triton's own onnxruntime and openvino backends (NVIDIA's container); tensorrt: FP16 TensorRT engines on a GPU.",
    )
    a.add_repository_argument(parser, "The model repository directory to write.")
    parser.add_argument("--onnx-dir", type=Path, help="Where to export the ONNX graphs (default: a cache directory keyed by the weights).")
    a.add_instance_arguments(parser)
    a.add_session_arguments(parser)
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="Inference threads per instance (ONNX Runtime intra-op threads, OpenVINO INFERENCE_NUM_THREADS); 0 lets the runtime use every core.",
    )
    parser.add_argument(
        "--instance-kind",
        choices=["KIND_CPU", "KIND_GPU"],
        help="Override the runtime's instance kind (e.g. KIND_GPU for onnxruntime in the NGC container).",
    )
    a.add_precision_argument(parser)
    a.add_openvino_arguments(parser)
    a.add_tensorrt_arguments(parser)


def run_build(args: argparse.Namespace) -> int:
    from sam_triton.build.export.pipeline import prepare_onnx
    from sam_triton.build.repository.assemble import assemble

    a.check_precision(args)
    options = a.repository_options(args)
    engine_options = a.engine_options(args)
    if options.runs_openvino() and options.openvino.precision == "bf16":
        from sam_triton.build.repository.openvino_options import require_native_bf16

        require_native_bf16()  # fail fast, before a long export
    if args.runtime == "tensorrt":
        from sam_triton.build.tensorrt.engine import require_tensorrt

        require_tensorrt()  # fail fast, before a long export
    onnx_dir, manifest = prepare_onnx(
        a.model_choice(args), cache_dir=a.cache_dir(args), onnx_dir=args.onnx_dir, check_image=args.image, check=not args.skip_check
    )
    if engine_options is None:
        assemble(args.repository, options, onnx_dir=onnx_dir)
    else:
        from sam_triton.build.repository.tensorrt_repository import build_tensorrt_repository, rebuild_command

        build_tensorrt_repository(
            repository=args.repository,
            onnx_dir=onnx_dir,
            manifest=manifest,
            repo_options=options,
            engine_options=engine_options,
            check_image=args.image,
            command=rebuild_command(args.argv),
        )
    print(f"wrote the {args.runtime} model repository at {args.repository} ({manifest['source']})")
    return 0
