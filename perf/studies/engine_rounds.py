"""ONNX Runtime against OpenVINO (FP32, and BF16 where the CPU runs it natively) on our ONNX graphs,
in interleaved rounds: each round calls every engine once on the same request, so a load change on
a shared machine hits all of them alike. This is the comparison behind the default runtime
(``build.repository.DEFAULT_RUNTIME``) and the decoder's engine; ``sam-triton perf`` measures the
same baselines one after the other, which a noisy machine can skew.

    python -m sam_triton.perf.studies.engine_rounds --model vit_b --rounds 8 --out docs/studies/engine_rounds_vit_b.json
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from sam_triton.client.contract import DECODER_MODEL, ENCODER_MODEL

from ..benchmark.baselines import GraphRunner, OpenVinoRunner, OrtRunner, openvino_precisions
from ..benchmark.workload import build_workload, load_photos

log = logging.getLogger(__name__)


def interleaved(calls: Mapping[str, Callable[[], object]], rounds: int) -> Dict[str, List[float]]:
    """Engine -> its ``rounds`` latencies (seconds), every engine called once per round, after one untimed call each."""
    for call in calls.values():
        call()
    times: Dict[str, List[float]] = {name: [] for name in calls}
    for index in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
        log.info("round %d: %s", index, {name: round(t[-1], 4) for name, t in times.items()})
    return times


def summarize(times: Mapping[str, List[float]], reference: str = "onnxruntime") -> Dict[str, dict]:
    """Median and min per engine, and the median of the per-round speed-ups over ``reference`` (ref time / engine time)."""
    out = {}
    for name, values in times.items():
        ratios = [r / v for r, v in zip(times[reference], values)]
        out[name] = {
            "median_ms": round(statistics.median(values) * 1e3, 2),
            "min_ms": round(min(values) * 1e3, 2),
            f"speedup_over_{reference}_median": round(statistics.median(ratios), 3),
            f"speedup_over_{reference}_range": [round(min(ratios), 3), round(max(ratios), 3)],
        }
    return out


def measure(onnx_dir: Path, rounds: int) -> dict:
    """Encoder (first photo) and decoder (the workload's first case) rounds on every engine this CPU runs."""
    precisions, bf16_missing = openvino_precisions()
    runners: Dict[str, GraphRunner] = {"onnxruntime": OrtRunner(onnx_dir)}
    runners.update({f"openvino-{p}": OpenVinoRunner(onnx_dir, precision=p) for p in precisions})
    workload = build_workload(load_photos())
    photo, case = workload.photos[0], workload.cases[0]
    embedding = runners["onnxruntime"].encode(case.photo)
    result: Dict[str, Any] = {"bf16_left_out": bf16_missing, "request": {"photo": photo.name, "decoder_case": case.name}}
    for model, make in ((ENCODER_MODEL, lambda r: lambda: r.encode(photo)), (DECODER_MODEL, lambda r: lambda: r.decode(embedding, case))):
        log.info("%s: %d interleaved rounds on %s", model, rounds, ", ".join(runners))
        result[model] = summarize(interleaved({name: make(runner) for name, runner in runners.items()}, rounds))
    return result


def markdown(result: Mapping[str, Any]) -> str:
    lines = ["| model | engine | median ms | min ms | speed-up over ONNX Runtime (median of rounds; range) |", "|---|---|---|---|---|"]
    for model in (ENCODER_MODEL, DECODER_MODEL):
        for engine, f in result[model].items():
            low, high = f["speedup_over_onnxruntime_range"]
            lines.append(
                f"| {model} | {engine} | {f['median_ms']:.1f} | {f['min_ms']:.1f} |"
                f" {f['speedup_over_onnxruntime_median']:.2f}x ({low:.2f}-{high:.2f}) |"
            )
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sam_triton.perf.studies.engine_rounds", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vit_b", help="A preset (seeded random weights) or a checkpoint path.")
    parser.add_argument("--rounds", type=int, default=8, help="Interleaved rounds per model.")
    parser.add_argument("--cache-dir", type=Path, help="Where exports are cached (default: $SAM_TRITON_CACHE or ~/.cache/sam-triton).")
    parser.add_argument("--out", type=Path, help="A JSON file for the figures.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from sam_triton.build.export.pipeline import ModelChoice, prepare_onnx
    from sam_triton.build.repository.openvino_options import cpu_capabilities
    from sam_triton.build.server.tritonserver import default_cache_dir

    onnx_dir, _ = prepare_onnx(ModelChoice.parse(args.model), cache_dir=args.cache_dir or default_cache_dir())
    cpu = cpu_capabilities()
    result = {
        "command": "python -m sam_triton.perf.studies.engine_rounds "
        + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "cpu": f"{cpu['name']} ({platform.machine()}; OpenVINO capabilities {', '.join(cpu['capabilities'])})",
        "model": args.model,
        "rounds": args.rounds,
        "date": time.strftime("%Y-%m-%d"),
        **measure(onnx_dir, args.rounds),
    }
    print(markdown(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
