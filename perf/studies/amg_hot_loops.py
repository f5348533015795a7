"""``generate`` on a 32x32 grid and its two hot loops (NMS, small-region removal), two checkouts side by side.

    python perf/studies/amg_hot_loops.py compare --url 127.0.0.1:8001 --image tests/images/truck.jpg \\
        --before ../main/.venv/bin/python --after .venv/bin/python --candidates /tmp/truck-candidates.npz \\
        --rounds 2 --json docs/studies/amg_hot_loops.json

``compare`` runs this file, by path, under each interpreter in turn (before, after, before, ...):
each one imports the ``sam_triton.client`` of its own checkout, so the figures are that checkout's
code against the same server in one run. Each ``measure`` run (one interpreter, one process)
times ``generate`` on the photo, then the hot functions alone on the real masks: ``nms`` on the
candidates that reach ``merge_batches`` (``generate`` with box NMS off) and
``remove_small_regions`` (holes, then islands) on each of them. Digests of every output show
that both checkouts compute the same masks. Only ``sam_triton.client`` and the standard library
are imported, so a client-only install runs it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

#: generate's settings: a 32x32 grid with the thresholds the tiny preset's weak logits need
#: (tests/test_generate.py) and small-region removal on, so both hot loops run.
SETTINGS: Dict[str, Any] = dict(
    points_per_side=32,
    pred_iou_thresh=0.0,
    stability_score_offset=0.05,
    stability_score_thresh=0.3,
    box_nms_thresh=0.7,
    min_mask_region_area=100,
    output_mode="uncompressed_rle",
)


def _digest(*arrays: Any) -> str:
    h = hashlib.sha256()
    for array in arrays:
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()[:16]


def _best_of(fn, repeat: int) -> float:
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return min(seconds)


def save_candidates(url: str, image_path: Path, path: Path, masks_kept: int) -> None:
    """The masks that reach merge_batches' NMS (generate with box NMS and small-region removal off):
    every box and score, and the first ``masks_kept`` masks (bit-packed), into an .npz file."""
    from sam_triton.client import SamClient
    from sam_triton.client.amg import masks
    from sam_triton.client.images import load_image

    image = load_image(image_path)
    with SamClient(url, timeout_s=600) as client:
        candidates = client.generate(image, **dict(SETTINGS, box_nms_thresh=1.0, min_mask_region_area=0))
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in candidates)], dtype=np.int64).reshape(-1, 4)
    scores = np.array([r["predicted_iou"] for r in candidates], dtype=np.float32)
    stacked = np.stack([masks.rle_to_mask(r["segmentation"]) for r in candidates[:masks_kept]])
    np.savez(path, boxes=boxes, scores=scores, masks=np.packbits(stacked, axis=-1), shape=np.array(stacked.shape))


def measure(url: str, image_path: Path, runs: int, repeat: int, candidates_path: Path) -> Dict[str, Any]:
    """One checkout's figures: generate's seconds per run, and the hot functions' best-of-``repeat`` seconds."""
    from sam_triton.client import SamClient
    from sam_triton.client.amg import geometry, masks
    from sam_triton.client.images import load_image

    image = load_image(image_path)
    out: Dict[str, Any] = {"module": geometry.__file__, "image": f"{image_path.name} {image.shape[1]}x{image.shape[0]}"}
    with SamClient(url, timeout_s=600) as client:
        client.generate(image, points_per_side=2)  # connect and embed once: no run pays for the first call
        seconds, records = [], []
        for _ in range(runs):
            start = time.perf_counter()
            records = client.generate(image, **SETTINGS)
            seconds.append(time.perf_counter() - start)
    out["generate_s"] = seconds
    out["generate_masks"] = len(records)
    out["generate_digest"] = _digest(*[np.asarray(r["segmentation"]["counts"]) for r in records])
    saved = np.load(candidates_path)
    boxes, scores = saved["boxes"], saved["scores"]
    shape = tuple(saved["shape"].tolist())
    mask_list = list(np.unpackbits(saved["masks"], axis=-1, count=shape[-1]).astype(bool))
    keep = geometry.nms(boxes, scores, SETTINGS["box_nms_thresh"])
    out["candidates"] = len(boxes)
    out["nms_kept"] = len(keep)
    out["nms_digest"] = _digest(keep)
    out["nms_s"] = _best_of(lambda: geometry.nms(boxes, scores, SETTINGS["box_nms_thresh"]), repeat)
    area = SETTINGS["min_mask_region_area"]

    def small_regions() -> List[np.ndarray]:
        cleaned = []
        for mask in mask_list:
            mask, _ = masks.remove_small_regions(mask, area, "holes")
            cleaned.append(masks.remove_small_regions(mask, area, "islands")[0])
        return cleaned

    out["small_regions_masks"] = len(mask_list)
    out["small_regions_digest"] = _digest(*small_regions())
    out["small_regions_s"] = _best_of(small_regions, repeat)
    return out


def compare(args: argparse.Namespace) -> Dict[str, Any]:
    """Alternate ``measure`` runs of the two interpreters; medians per side and after/before ratios."""
    sides: Dict[str, List[Dict[str, Any]]] = {"before": [], "after": []}
    candidates = Path(args.candidates)
    if not candidates.exists():
        command = [
            args.after,
            str(Path(__file__).resolve()),
            "candidates",
            "--url",
            args.url,
            "--image",
            str(args.image),
            "--points-per-side",
            str(args.points_per_side),
        ]
        subprocess.run(command + ["--out", str(candidates), "--masks", str(args.masks)], check=True)
    for round_ in range(args.rounds):
        for side, python in (("before", args.before), ("after", args.after)):
            command = [
                python,
                str(Path(__file__).resolve()),
                "measure",
                "--url",
                args.url,
                "--image",
                str(args.image),
                "--points-per-side",
                str(args.points_per_side),
            ]
            command += ["--runs", str(args.runs), "--repeat", str(args.repeat), "--candidates", str(candidates)]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            sides[side].append(result)
            print(
                f"round {round_ + 1} {side}: generate {', '.join(f'{s:.2f}' for s in result['generate_s'])} s,"
                f" nms {result['nms_s'] * 1e3:.1f} ms, small regions {result['small_regions_s'] * 1e3:.0f} ms",
                flush=True,
            )
    summary: Dict[str, Any] = {}
    for side, results in sides.items():
        summary[side] = {
            "module": results[0]["module"],
            "generate_median_s": statistics.median(s for r in results for s in r["generate_s"]),
            "nms_median_s": statistics.median(r["nms_s"] for r in results),
            "small_regions_median_s": statistics.median(r["small_regions_s"] for r in results),
        }
        keys = (
            "generate_masks",
            "generate_digest",
            "candidates",
            "nms_kept",
            "nms_digest",
            "small_regions_masks",
            "small_regions_digest",
            "image",
        )
        for key in keys:
            values = {r[key] for r in results}
            summary[side][key] = values.pop() if len(values) == 1 else sorted(values)
    summary["after_over_before"] = {
        key: summary["after"][f"{key}_median_s"] / summary["before"][f"{key}_median_s"] for key in ("generate", "nms", "small_regions")
    }
    summary["same_outputs"] = all(
        summary["before"][k] == summary["after"][k] for k in ("generate_digest", "nms_digest", "small_regions_digest")
    )
    invocation = "python perf/studies/amg_hot_loops.py " + " ".join(sys.argv[1:])
    return {
        "command": invocation,
        "settings": SETTINGS,
        "rounds": args.rounds,
        "runs_per_round": args.runs,
        "repeat": args.repeat,
        "summary": summary,
        "raw": sides,
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python perf/studies/amg_hot_loops.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("candidates", "measure", "compare"):
        p = sub.add_parser(name)
        p.add_argument("--url", default="127.0.0.1:8001", help="The gRPC address of a server of the tiny preset.")
        p.add_argument("--image", type=Path, required=True, help="The photo.")
        p.add_argument("--points-per-side", type=int, default=32, help="generate's grid (a smaller one for a quick try).")
    sub.choices["candidates"].add_argument("--out", type=Path, required=True, help="The .npz file to write.")
    for name in ("candidates", "compare"):
        sub.choices[name].add_argument("--masks", type=int, default=100, help="Candidate masks kept for the small-region timing.")
    for name in ("measure", "compare"):
        p = sub.choices[name]
        p.add_argument("--runs", type=int, default=1, help="generate runs per measure run.")
        p.add_argument("--repeat", type=int, default=3, help="Timings of each hot function per measure run (the best counts).")
        p.add_argument("--candidates", type=Path, required=True, help="The candidates' .npz (compare writes it if missing).")
    compare_parser = sub.choices["compare"]
    compare_parser.add_argument("--before", required=True, help="The python of the checkout before the change (its own venv).")
    compare_parser.add_argument("--after", required=True, help="The python of the checkout after it.")
    compare_parser.add_argument("--rounds", type=int, default=3, help="Alternations before, after.")
    compare_parser.add_argument("--json", type=Path, help="Write the figures here.")
    args = parser.parse_args(argv)
    SETTINGS["points_per_side"] = args.points_per_side
    if args.command == "candidates":
        save_candidates(args.url, args.image, args.out, args.masks)
        return 0
    if args.command == "measure":
        print(json.dumps(measure(args.url, args.image, args.runs, args.repeat, args.candidates)))
        return 0
    report = compare(args)
    print(json.dumps(report["summary"], indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
