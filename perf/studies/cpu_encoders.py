"""CPU encoders side by side: MobileSAM's vit_t and ViT-B at FP32, BF16 and INT8 on the openvino runtime.

One run, one model and precision after another, on the same machine: each gets its openvino
repository (encoder on OpenVINO at that precision; decoder unchanged, ONNX Runtime FP32), served by
the embedded tritonserver, and its in-process baseline (the same encoder file, compiled with the
served settings, in this process). Per configuration:

- served encoder p50: sam_encoder requests over gRPC with the client's prepared tensors (as
  perf_analyzer sends them), one at a time;
- in-process encoder p50 (``perf.benchmark.baselines.OpenVinoRunner``);
- decoder p50: one click's ``SamClient.predict`` on the image already set;
- time to first mask: reading the photo from disk, ``set_image`` and the first click's
  ``predict``, median over the photos, and the decoder's share of it;
- masks against the same model's FP32 server (every prompt kind, the shared photos): equal pixels;
- vit_t: fidelity against MobileSAM's PyTorch SamPredictor (``perf.studies.fidelity.measure``).

Weights are seeded random (``--preset``): label every INT8 and BF16 figure "random weights".
Run: ``python -m sam_triton.perf.studies.cpu_encoders --out docs/studies/cpu_encoders`` (writes
``.json`` and ``.md``).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .fidelity import PHOTOS, PHOTOS_DIR, prompts_for

log = logging.getLogger(__name__)

DEFAULT_CONFIGS = ("vit_t:fp32", "vit_t:bf16", "vit_t:int8", "vit_b:fp32", "vit_b:bf16", "vit_b:int8")


def _p50(seconds: Sequence[float]) -> float:
    return round(float(np.percentile(seconds, 50)), 4)


def served_encoder_s(url: str, feeds: Sequence[Dict[str, np.ndarray]], reps: int) -> List[float]:
    """Wall seconds of ``reps`` sam_encoder requests (photos in turn), after one untimed warm-up."""
    import tritonclient.grpc as grpcclient

    from sam_triton.client import contract

    client = grpcclient.InferenceServerClient(url)
    times = []
    for i in range(reps + 1):
        feed = feeds[i % len(feeds)]
        inputs = []
        for name, dtype in ((contract.IMAGE.name, "UINT8"), (contract.INPUT_SIZE.name, "INT32")):
            tensor = grpcclient.InferInput(name, list(feed[name].shape), dtype)
            tensor.set_data_from_numpy(feed[name])
            inputs.append(tensor)
        start = time.perf_counter()
        client.infer(contract.ENCODER_MODEL, inputs, outputs=[grpcclient.InferRequestedOutput(contract.IMAGE_EMBEDDINGS.name)])
        if i:
            times.append(time.perf_counter() - start)
    client.close()
    return times


def in_process_encoder_s(runner, feeds: Sequence[Dict[str, np.ndarray]], reps: int) -> List[float]:
    times = []
    for i in range(reps + 1):
        start = time.perf_counter()
        runner.encoder.run(None, feeds[i % len(feeds)])
        if i:
            times.append(time.perf_counter() - start)
    return times


def first_masks(client, paths: Sequence[Path]) -> dict:
    """Per photo: time to first mask (read + set_image + one click), the decoder alone, and every prompt's masks."""
    from sam_triton.client.images import load_image

    ttfm, decoder, masks = [], [], {}
    for path in paths:
        start = time.perf_counter()
        image = load_image(path)
        client.set_image(image)
        prompts = prompts_for(*image.shape[:2])
        client.predict(multimask_output=True, **prompts["one_point"])
        ttfm.append(time.perf_counter() - start)
        for _ in range(5):
            start = time.perf_counter()
            client.predict(multimask_output=True, **prompts["one_point"])
            decoder.append(time.perf_counter() - start)
        for kind, prompt in prompts.items():
            masks[f"{path.stem}:{kind}"] = client.predict(multimask_output=True, **prompt)[0]
    return {"ttfm": ttfm, "decoder": decoder, "masks": masks}


def run_config(model: str, precision: str, paths: Sequence[Path], reps: int, cache_dir: Path, work: Path, fidelity: bool) -> dict:
    from sam_triton.build.export.pipeline import ModelChoice, prepare_onnx
    from sam_triton.build.export.quantize import DEFAULT_SCOPE
    from sam_triton.build.repository.assemble import RepositoryOptions, assemble
    from sam_triton.build.repository.openvino_options import OpenVinoOptions
    from sam_triton.build.server.tritonserver import ServerConfig, TritonServer
    from sam_triton.client import SamClient
    from sam_triton.client.images import load_image
    from sam_triton.client.predictor.transforms import prepare_image
    from sam_triton.perf.benchmark.baselines import OpenVinoRunner

    precision, _, scope = precision.partition("@")  # int8@none: another ignored scope
    scope = scope or DEFAULT_SCOPE
    choice = ModelChoice(model_type=model)
    onnx_dir, _ = prepare_onnx(choice, cache_dir=cache_dir)
    feeds = []
    for path in paths:
        padded, size = prepare_image(load_image(path))
        feeds.append({"image": padded[None], "input_size": size[None]})
    repository = assemble(
        work / f"repo-{model}-{precision}",
        RepositoryOptions(runtime="openvino", openvino=OpenVinoOptions(precision=precision, int8_scope=scope)),
        onnx_dir=onnx_dir,
    )
    label = precision if precision != "int8" else f"int8@{scope}"
    result: dict = {"model": model, "precision": label, "weights": "random (seeded preset)"}
    with TritonServer(ServerConfig.on_free_ports(repository), log_path=work / f"{model}-{precision}.log", cache_dir=cache_dir) as server:
        served = served_encoder_s(server.config.grpc_url, feeds, reps)
        with SamClient(server.config.grpc_url, timeout_s=600) as client:
            first = first_masks(client, paths)
            if fidelity:
                from sam_triton.build.models.mobile_sam import predictor as reference_predictor

                from .fidelity import measure

                sam = choice.load()
                images = {path.stem: load_image(path) for path in paths}

                def predictor_for(_name, image):
                    predictor = reference_predictor(sam)
                    predictor.set_image(image)
                    return predictor

                result["fidelity_vs_pytorch"] = measure(client, predictor_for, images)
    runner = OpenVinoRunner(onnx_dir, precision=precision, int8_scope=scope)
    local = in_process_encoder_s(runner, feeds, reps)
    del runner
    ttfm = statistics.median(first["ttfm"])
    decoder = _p50(first["decoder"])
    result.update(
        {
            "served_encoder_s": [round(t, 4) for t in served],
            "served_encoder_p50_s": _p50(served),
            "in_process_encoder_s": [round(t, 4) for t in local],
            "in_process_encoder_p50_s": _p50(local),
            "decoder_p50_s": decoder,
            "time_to_first_mask_s": round(ttfm, 4),
            "decoder_share_of_first_mask": round(decoder / ttfm, 4),
        }
    )
    result["_masks"] = first["masks"]
    return result


def agreement(masks: Dict[str, np.ndarray], reference: Dict[str, np.ndarray]) -> dict:
    shares = {key: float(np.mean(masks[key] == reference[key])) for key in reference}
    return {
        "worst": min(shares.values()),
        "mean": float(np.mean(list(shares.values()))),
        "worst_case": min(shares, key=lambda key: shares[key]),
    }


def markdown(study: dict) -> str:
    lines = [
        "# CPU encoders side by side: vit_t and ViT-B, FP32 / BF16 / INT8 (random weights)",
        "",
        f"Command: `{study['command']}`  ",
        f"Machine: {study['cpu']}; {study['cores']} cores, shared with other jobs while it ran (ratios are side by side in one run).  ",
        f"Date: {study['date']}; OpenVINO {study['openvino']}; NNCF {study['nncf']}; photos {', '.join(study['photos'])};"
        f" {study['reps']} encoder requests per configuration.",
        "",
        "All weights are seeded random (`--preset`): INT8 and BF16 agreement figures are of random weights, which lack the"
        " activation outliers of trained SAM weights; measure your own checkpoint with"
        " `python -m sam_triton.perf.studies.fidelity --models CHECKPOINT --precisions fp32 int8 --photos ...`.",
        "",
        "| model | precision | served encoder p50 | in-process encoder p50 | speed-up over FP32 served | decoder p50 | time to first mask | decoder share | masks equal to FP32 (worst prompt) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in study["results"]:
        speedup = r.get("speedup_over_fp32_served")
        agree = r.get("mask_agreement_vs_fp32")
        agree_text = f"{100 * agree['worst']:.3f} %" if agree else "(reference)"
        lines.append(
            f"| `{r['model']}` | {r['precision'].upper()} | {r['served_encoder_p50_s']:.3f} s | {r['in_process_encoder_p50_s']:.3f} s |"
            f" {f'{speedup:.2f}x' if speedup else '1x'} | {1000 * r['decoder_p50_s']:.0f} ms | {r['time_to_first_mask_s']:.3f} s |"
            f" {100 * r['decoder_share_of_first_mask']:.1f} % | {agree_text} |"
        )
    for r in study["results"]:
        if "fidelity_vs_pytorch" in r:
            f = r["fidelity_vs_pytorch"]
            worst_l2 = max(v["logits_rel_l2"] for k, v in f.items() if k != "embedding_rel_l2")
            worst_px = min(v["mask_agreement"] for k, v in f.items() if k != "embedding_rel_l2")
            lines.append("")
            lines.append(
                f"`{r['model']}` {r['precision'].upper()} through the server against MobileSAM's PyTorch SamPredictor (random weights):"
                f" worst logits rel. L2 {worst_l2:.2g}, worst mask pixels equal {100 * worst_px:.4f} %, embedding rel. L2 {f['embedding_rel_l2']:.2g}."
            )
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sam_triton.perf.studies.cpu_encoders", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--configs",
        nargs="+",
        default=list(DEFAULT_CONFIGS),
        help="model:precision pairs, FP32 of a model first; int8@SCOPE for another ignored scope.",
    )
    parser.add_argument("--reps", type=int, default=5, help="Timed encoder requests per configuration (served and in-process).")
    parser.add_argument("--cache-dir", type=Path, help="Where exports are cached (default: $SAM_TRITON_CACHE or ~/.cache/sam-triton).")
    parser.add_argument("--out", type=Path, required=True, help="Output path without suffix: writes OUT.json and OUT.md.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import os

    import nncf
    import openvino

    from sam_triton.build.repository.openvino_options import cpu_capabilities
    from sam_triton.build.server.tritonserver import default_cache_dir

    paths = [PHOTOS_DIR / f"{name}.jpg" for name in PHOTOS]
    cpu = cpu_capabilities()
    study = {
        "command": "python -m sam_triton.perf.studies.cpu_encoders "
        + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "cpu": f"{cpu['name']} ({platform.machine()}; OpenVINO capabilities {', '.join(cpu['capabilities'])})",
        "cores": os.cpu_count(),
        "openvino": openvino.__version__,
        "nncf": nncf.__version__,
        "photos": list(PHOTOS),
        "reps": args.reps,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "results": [],
    }
    fp32: Dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as work:
        for config in args.configs:
            model, precision = config.split(":")
            log.info("measuring %s %s", model, precision)
            result = run_config(model, precision, paths, args.reps, args.cache_dir or default_cache_dir(), Path(work), model == "vit_t")
            masks = result.pop("_masks")
            if precision == "fp32":
                fp32[model] = {"masks": masks, "served": result["served_encoder_p50_s"]}
            elif model in fp32:
                result["mask_agreement_vs_fp32"] = agreement(masks, fp32[model]["masks"])
                result["speedup_over_fp32_served"] = round(fp32[model]["served"] / result["served_encoder_p50_s"], 3)
            study["results"].append(result)
            log.info("%s %s: %s", model, precision, {k: v for k, v in result.items() if not isinstance(v, (list, dict))})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(study, indent=1) + "\n")
    text = markdown(study)
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
