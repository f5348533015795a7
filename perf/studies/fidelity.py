"""Fidelity of a served repository against Meta's SamPredictor, per prompt kind, through a real server.

The figures of the end-to-end bar, for the prompt set of the end-to-end issue (one point, fg/bg
points, a box, box + point, and a second pass fed the first pass's low-res logits as
``mask_input``), each the worst over the photos, over ``multimask_output`` on and off, and over
SamClient.predict (sam_encoder then sam_decoder) and SamClient.segment (the sam ensemble):

- ``logits_rel_l2``: relative L2 error of the low-res logits (Cx256x256);
- ``iou_abs``: largest absolute error of the IoU predictions (C);
- ``mask_agreement``: share of equal pixels of the full-resolution masks (CxHxW, bool);

plus ``embedding_rel_l2`` per photo (the 256x64x64 image embedding).

Run as a study: ``python -m sam_triton.perf.studies.fidelity --models tiny vit_b --precisions fp32 bf16
--out docs/studies/openvino_fidelity.json`` builds the openvino repository of each model and
precision, serves it with the embedded tritonserver, and writes the figures (JSON) that the README
publishes.

Before switching to ``--precision int8`` (or bf16), measure your own checkpoint on your own photos:
``python -m sam_triton.perf.studies.fidelity --models sam_vit_b_01ec64.pth --precisions fp32 int8
--photos a.jpg b.jpg --out fidelity.json``. Figures of presets are of seeded random weights, and
say so ("weights": "random"): random weights lack trained SAM's activation outliers, which INT8
is sensitive to.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

import numpy as np

from sam_triton.build.export.quantize import DEFAULT_SCOPE, SCOPES
from sam_triton.build.export.verify import rel_l2
from sam_triton.build.repository.openvino_options import PRECISIONS

log = logging.getLogger(__name__)

PROMPT_KINDS = ("one_point", "fg_bg_points", "box", "box_point", "mask_input")
PHOTOS_DIR = Path(__file__).resolve().parents[2] / "tests" / "images"
PHOTOS = ("truck", "dog", "groceries")


def prompts_for(height: int, width: int) -> dict:
    """One point, several fg/bg points, a box, and box + point, in original-image pixels."""
    return {
        "one_point": dict(point_coords=np.array([[width * 0.5, height * 0.55]]), point_labels=np.array([1])),
        "fg_bg_points": dict(
            point_coords=np.array([[width * 0.5, height * 0.5], [width * 0.2, height * 0.25], [width * 0.7, height * 0.6]]),
            point_labels=np.array([1, 0, 1]),
        ),
        "box": dict(box=np.array([width * 0.1, height * 0.15, width * 0.8, height * 0.9])),
        "box_point": dict(
            box=np.array([width * 0.1, height * 0.15, width * 0.8, height * 0.9]),
            point_coords=np.array([[width * 0.4, height * 0.5]]),
            point_labels=np.array([0]),
        ),
    }


def second_pass_prompts(height: int, width: int) -> tuple:
    """(first, second): a click, then the click plus a background click fed the best first mask."""
    first = prompts_for(height, width)["one_point"]
    second = dict(point_coords=np.array([[width * 0.5, height * 0.55], [width * 0.3, height * 0.3]]), point_labels=np.array([1, 0]))
    return first, second


@dataclass(frozen=True)
class Figures:
    """Errors of one answer (or the worst of several) against SamPredictor's."""

    logits_rel_l2: float
    iou_abs: float
    mask_agreement: float

    def worst(self, other: Optional["Figures"]) -> "Figures":
        if other is None:
            return self
        return Figures(
            max(self.logits_rel_l2, other.logits_rel_l2), max(self.iou_abs, other.iou_abs), min(self.mask_agreement, other.mask_agreement)
        )


def compare(actual: tuple, expected: tuple) -> Figures:
    """Figures of (masks, iou, low-res logits) against SamPredictor.predict's answer."""
    masks, iou, logits = actual
    ref_masks, ref_iou, ref_logits = expected
    if masks.shape != ref_masks.shape or iou.shape != ref_iou.shape or logits.shape != ref_logits.shape:
        raise ValueError(f"shapes differ: {masks.shape, iou.shape, logits.shape} vs {ref_masks.shape, ref_iou.shape, ref_logits.shape}")
    return Figures(rel_l2(logits, ref_logits), float(np.max(np.abs(iou - ref_iou))), float(np.mean(masks == ref_masks)))


def measure_photo(client, predictor, image: np.ndarray) -> Dict[str, Union[float, Figures]]:
    """Figures per prompt kind (and the embedding error) for one HxWx3 uint8 RGB photo.

    ``predictor`` is a SamPredictor with ``image`` already set; ``client`` a SamClient.
    """
    client.set_image(image)
    h, w = image.shape[:2]
    figures: Dict[str, Union[float, Figures]] = {
        "embedding_rel_l2": rel_l2(client.get_image_embedding(), predictor.get_image_embedding().numpy())
    }
    for kind, prompt in prompts_for(h, w).items():
        worst = None
        for multimask in (True, False):
            worst = compare(
                client.predict(multimask_output=multimask, **prompt), predictor.predict(multimask_output=multimask, **prompt)
            ).worst(worst)
        figures[kind] = compare(client.segment(image, **prompt), predictor.predict(**prompt)).worst(worst)
    first, second = second_pass_prompts(h, w)  # segment() left the current image as it was
    _, _, logits = client.predict(multimask_output=True, **first)
    _, ref_scores, ref_logits = predictor.predict(multimask_output=True, **first)
    best = int(np.argmax(ref_scores))
    figures["mask_input"] = compare(
        client.predict(mask_input=logits[best][None], multimask_output=False, **second),
        predictor.predict(mask_input=ref_logits[best][None], multimask_output=False, **second),
    )
    return figures


def measure(client, predictor_for: Callable[[str, np.ndarray], Any], images: Mapping[str, np.ndarray]) -> Dict[str, Union[dict, float]]:
    """Worst figures over ``images`` (name -> photo): {kind: Figures as dict, 'embedding_rel_l2': float}."""
    worst: Dict[str, Union[float, Figures]] = {}
    for name, image in images.items():
        for key, value in measure_photo(client, predictor_for(name, image), image).items():
            previous = worst.get(key)
            if isinstance(value, Figures):  # a prompt kind's
                worst[key] = value.worst(previous if isinstance(previous, Figures) else None)
            else:  # embedding_rel_l2
                worst[key] = max(previous if isinstance(previous, float) else 0.0, value)
    return {key: (asdict(value) if isinstance(value, Figures) else value) for key, value in worst.items()}


KIND_NAMES = {
    "one_point": "one point",
    "fg_bg_points": "fg/bg points",
    "box": "box",
    "box_point": "box + point",
    "mask_input": "second pass (mask_input)",
}


def _percent(share: float) -> str:
    text = f"{100 * share:.4f} %"
    return "100 %" if share == 1.0 else ("> 99.9999 %" if text == "100.0000 %" else text)


def markdown_table(study: Mapping[str, Any]) -> str:
    """The README's table of a study's figures: per model, a row per prompt kind, columns per precision."""
    lines = []
    for model, runs in study["models"].items():
        precisions = list(runs)
        random = "random" in str(study.get("weights", {}).get(model, ""))
        header = [f"`{model}`" + (" (random weights)" if random else "")] + [
            f"{p.upper()} {what}" for p in precisions for what in ("logits rel. L2", "IoU error", "mask pixels equal")
        ]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for kind in PROMPT_KINDS:
            cells = []
            for precision in precisions:
                f = runs[precision][kind]
                cells += [f"{f['logits_rel_l2']:.2g}", f"{f['iou_abs']:.2g}", _percent(f["mask_agreement"])]
            lines.append("| " + " | ".join([KIND_NAMES[kind]] + cells) + " |")
        embedding = [c for p in precisions for c in (f"{runs[p]['embedding_rel_l2']:.2g}", "", "")]
        lines += ["| " + " | ".join(["image embedding"] + embedding) + " |", ""]
    return "\n".join(lines).strip() + "\n"


def _model_figures(
    model: str, precisions: Sequence[str], images: Mapping[str, np.ndarray], cache_dir: Path, work: Path, int8_scope: str
) -> dict:
    """Precision -> figures: ``model``'s export and SamPredictor answers once, then one openvino repository per precision, served and measured."""
    from sam_triton.build.export.pipeline import ModelChoice, prepare_onnx
    from sam_triton.build.models.mobile_sam import predictor as reference_predictor
    from sam_triton.build.repository.assemble import RepositoryOptions, assemble
    from sam_triton.build.repository.openvino_options import OpenVinoOptions
    from sam_triton.build.server.tritonserver import ServerConfig, TritonServer
    from sam_triton.client import SamClient

    choice = ModelChoice.parse(model)
    onnx_dir, _ = prepare_onnx(choice, cache_dir=cache_dir)
    sam = choice.load()
    predictors: Dict[str, Any] = {}  # SamPredictor, or MobileSAM's for vit_t

    def predictor_for(name: str, image: np.ndarray):
        if name not in predictors:
            predictors[name] = reference_predictor(sam)
            predictors[name].set_image(image)
        return predictors[name]

    figures = {}
    for precision in precisions:
        repository = assemble(
            work / f"repo-{Path(model).stem}-{precision}",
            RepositoryOptions(runtime="openvino", openvino=OpenVinoOptions(precision=precision, int8_scope=int8_scope)),
            onnx_dir=onnx_dir,
        )
        config = ServerConfig.on_free_ports(repository)
        with TritonServer(config, log_path=work / f"tritonserver-{precision}.log", cache_dir=cache_dir) as server:
            with SamClient(server.config.grpc_url, timeout_s=600) as client:
                figures[precision] = measure(client, predictor_for, images)
    return figures


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sam_triton.perf.studies.fidelity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["tiny"], help="Presets (seeded random weights) or checkpoint paths to measure.")
    parser.add_argument(
        "--precisions", nargs="+", default=["fp32", "bf16"], choices=list(PRECISIONS), help="The openvino runtime's precisions to measure."
    )
    parser.add_argument(
        "--photos", nargs="+", type=Path, help="Your own photos to measure on (default: the project's tests/images: truck, dog, groceries)."
    )
    parser.add_argument(
        "--int8-scope", choices=sorted(SCOPES), default=DEFAULT_SCOPE, help="With int8: the layers NNCF leaves in floating point."
    )
    parser.add_argument("--cache-dir", type=Path, help="Where exports are cached (default: $SAM_TRITON_CACHE or ~/.cache/sam-triton).")
    parser.add_argument("--out", type=Path, required=True, help="The JSON file to write the figures into.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import openvino

    from sam_triton.build.models.presets import PRESETS
    from sam_triton.build.repository.openvino_options import cpu_capabilities
    from sam_triton.build.server.tritonserver import default_cache_dir
    from sam_triton.client.images import load_image

    paths = args.photos or [PHOTOS_DIR / f"{name}.jpg" for name in PHOTOS]
    images = {Path(path).stem: load_image(Path(path)) for path in paths}
    cpu = cpu_capabilities()
    result = {
        "command": "python -m sam_triton.perf.studies.fidelity "
        + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "cpu": f"{cpu['name']} ({platform.machine()}; OpenVINO capabilities {', '.join(cpu['capabilities'])})",
        "openvino": openvino.__version__,
        "photos": list(images),
        "weights": {Path(m).stem: ("random (seeded preset)" if m in PRESETS else f"checkpoint {m}") for m in args.models},
        "int8_scope": args.int8_scope if "int8" in args.precisions else None,
        "date": time.strftime("%Y-%m-%d"),
        "models": {},
    }
    with tempfile.TemporaryDirectory() as work:
        for model in args.models:
            result["models"][Path(model).stem] = _model_figures(
                model, args.precisions, images, args.cache_dir or default_cache_dir(), Path(work), args.int8_scope
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown_table(result))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
