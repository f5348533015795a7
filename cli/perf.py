"""`sam-triton perf`: its flags and the function that turns them into one PerfOptions and runs it."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path
from typing import Tuple

from sam_triton.build.repository.assemble import RUNTIMES

from . import arguments as a


def concurrency_list(text: str) -> Tuple[int, ...]:
    """'1,2,4' -> (1, 2, 4)."""
    try:
        levels = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 1,2,4,8,16, got {text!r}") from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError(f"expected concurrency levels >= 1, got {text!r}")
    return levels


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a.add_model_arguments(parser)
    a.add_cache_argument(parser)
    a.add_repository_argument(parser, "The model repository to serve and benchmark (with --url: the one that server serves).")
    parser.add_argument(
        "--runtime",
        choices=sorted(RUNTIMES),
        help="Write the repository for this runtime from the model first, as `build` does with its defaults; omitted: benchmark the repository as it is.",
    )
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16", "int8"],
        default="fp32",
        help="With --runtime openvino (or openvino-backend: fp32, bf16): the encoder's precision, as `build --precision` (int8: the NNCF-quantized encoder; its in-process OpenVINO INT8 baseline runs too).",
    )
    parser.add_argument("--url", help="Benchmark a running server at this gRPC HOST:PORT instead of starting the embedded one.")
    parser.add_argument(
        "--tritonserver",
        type=Path,
        help="Start this tritonserver binary instead of the embedded one (e.g. /opt/tritonserver/bin/tritonserver for --runtime onnxruntime).",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="A short run for CI: concurrency 1,8 for the decoder and 1,2 for the encoder and ensemble, one fixed-size measurement per level, 3 in-process requests per baseline.",
    )
    parser.add_argument(
        "--concurrency",
        type=concurrency_list,
        help="Concurrency levels for sam_decoder, and for sam_encoder and sam unless --encoder-concurrency is given (default 1,2,4,8,16).",
    )
    parser.add_argument(
        "--encoder-concurrency",
        type=concurrency_list,
        help="Concurrency levels for sam_encoder and the sam ensemble, which both run the image encoder (default: --concurrency).",
    )
    parser.add_argument(
        "--measurement-mode",
        choices=["count_windows", "time_windows"],
        help="perf_analyzer's --measurement-mode: windows of a request count, or of a fixed time.",
    )
    parser.add_argument(
        "--measurement-interval",
        type=int,
        help="perf_analyzer's --measurement-interval in milliseconds: the window length (time_windows) or its first length (count_windows); default 5000.",
    )
    parser.add_argument(
        "--window-rounds",
        type=int,
        help="Requests per concurrent client in each count window for sam_decoder: perf_analyzer's --measurement-request-count is this times the concurrency (default 10).",
    )
    parser.add_argument(
        "--encoder-window-rounds", type=int, help="The same for sam_encoder and sam, whose requests take far longer (default 5)."
    )
    parser.add_argument(
        "--stability-percentage",
        type=float,
        help="perf_analyzer's --stability-percentage: how far 3 windows may differ and still count as stable (default 10).",
    )
    parser.add_argument(
        "--max-trials",
        type=int,
        help="perf_analyzer's --max-trials: the most windows per level before it gives up on stability (default 10).",
    )
    parser.add_argument(
        "--baseline-requests", type=int, help="Timed in-process requests per model and baseline runtime (default 20; 3 with --quick)."
    )
    parser.add_argument(
        "--photo",
        type=Path,
        action="append",
        help="A photo to benchmark with; repeat for several (default: scikit-image's chelsea, coffee and astronaut photos).",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("perf/results"),
        help="Where the run's folder (<timestamp>-<host>/) with the report, CSVs and plots is written.",
    )
    parser.add_argument(
        "--tools-dir",
        type=Path,
        help="Where perf_analyzer is fetched to when it is not on PATH (default: .tools/ of the checkout, or $SAM_TRITON_TOOLS).",
    )
    parser.add_argument(
        "--run-timeout",
        type=float,
        default=1800.0,
        help="Seconds one perf_analyzer run (one model at one concurrency) may take before it is stopped.",
    )


def options_from_args(args: argparse.Namespace):
    """The parsed flags -> PerfOptions (the full or the quick run's defaults where a flag was not given)."""
    from sam_triton.perf.benchmark import options as o
    from sam_triton.perf.benchmark.analyzer import Measurement

    # --quick measures once per level; any stability flag brings perf_analyzer's windows back.
    stability = (args.measurement_mode, args.measurement_interval, args.stability_percentage, args.max_trials)
    stabilize = not args.quick or any(value is not None for value in stability)

    def measurement(rounds, full: Measurement, quick: Measurement) -> Measurement:
        given = {
            "mode": args.measurement_mode,
            "interval_ms": args.measurement_interval,
            "rounds": rounds,
            "stability_percentage": args.stability_percentage,
            "max_trials": args.max_trials,
        }
        base = quick if args.quick else full
        return dataclasses.replace(base, stabilize=stabilize, **{k: v for k, v in given.items() if v is not None})

    decoder_levels = args.concurrency or (o.QUICK_DECODER_CONCURRENCY if args.quick else o.FULL_CONCURRENCY)
    encoder_levels = args.encoder_concurrency or args.concurrency or (o.QUICK_ENCODER_CONCURRENCY if args.quick else o.FULL_CONCURRENCY)
    return o.PerfOptions(
        model=a.model_choice(args),
        repository=args.repository,
        cache_dir=a.cache_dir(args),
        results_dir=args.out,
        runtime=args.runtime,
        precision=args.precision,
        url=args.url,
        tritonserver=args.tritonserver,
        check_image=args.image,
        check_export=not args.skip_check,
        photos=tuple(args.photo or ()),
        decoder_concurrency=decoder_levels,
        encoder_concurrency=encoder_levels,
        decoder_measurement=measurement(args.window_rounds, o.FULL_DECODER_MEASUREMENT, o.QUICK_DECODER_MEASUREMENT),
        encoder_measurement=measurement(args.encoder_window_rounds, o.FULL_ENCODER_MEASUREMENT, o.QUICK_ENCODER_MEASUREMENT),
        baseline_requests=args.baseline_requests or (o.QUICK_BASELINE_REQUESTS if args.quick else o.FULL_BASELINE_REQUESTS),
        quick=args.quick,
        tools_dir=args.tools_dir,
        run_timeout_s=args.run_timeout,
        command_line=shlex.join(["sam-triton", *getattr(args, "argv", sys.argv[1:])]),
    )


def run(args: argparse.Namespace) -> int:
    from sam_triton.perf.benchmark.report import ratio_table
    from sam_triton.perf.benchmark.runner import run_benchmark

    run = run_benchmark(options_from_args(args))
    print(f"wrote {run.run_dir / 'report.md'} (perf_analyzer CSVs, plots and results.json beside it)\n")
    print(ratio_table(run.ratios))
    return 0
