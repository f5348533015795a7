"""`sam-triton perf`: its flags and the function that turns them into one PerfOptions and runs it.

Kept import-light (argparse only at import time) because the CLI imports it on every call.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Tuple


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
    """perf's own flags; the CLI adds the model (--checkpoint/--preset) and --cache-dir flags."""
    parser.add_argument("--repository", type=Path, required=True, help="The model repository to serve and benchmark (with --url: the one that server serves).")
    parser.add_argument("--runtime", choices=["python", "onnxruntime", "tensorrt"], help="Write the repository for this runtime from the model first, as `build` does with its defaults; omitted: benchmark the repository as it is.")
    parser.add_argument("--url", help="Benchmark a running server at this gRPC HOST:PORT instead of starting the embedded one.")
    parser.add_argument("--tritonserver", type=Path, help="Start this tritonserver binary instead of the embedded one (e.g. /opt/tritonserver/bin/tritonserver for --runtime onnxruntime).")
    parser.add_argument("--quick", action="store_true", help="A short run for CI: concurrency 1,8 for the decoder and 1,2 for the encoder and ensemble, one fixed-size measurement per level, 3 in-process requests per baseline.")
    parser.add_argument("--concurrency", type=concurrency_list, help="Concurrency levels for sam_decoder, and for sam_encoder and sam unless --encoder-concurrency is given (default 1,2,4,8,16).")
    parser.add_argument("--encoder-concurrency", type=concurrency_list, help="Concurrency levels for sam_encoder and the sam ensemble, which both run the image encoder (default: --concurrency).")
    parser.add_argument("--measurement-mode", choices=["count_windows", "time_windows"], help="perf_analyzer's --measurement-mode: windows of a request count, or of a fixed time.")
    parser.add_argument("--measurement-interval", type=int, help="perf_analyzer's --measurement-interval in milliseconds: the window length (time_windows) or its first length (count_windows); default 5000.")
    parser.add_argument("--measurement-request-count", type=int, help="perf_analyzer's --measurement-request-count for sam_decoder: requests per window in count_windows mode (default 50).")
    parser.add_argument("--encoder-measurement-request-count", type=int, help="The same for sam_encoder and sam, whose requests take far longer (default 10).")
    parser.add_argument("--stability-percentage", type=float, help="perf_analyzer's --stability-percentage: how far 3 windows may differ and still count as stable (default 10).")
    parser.add_argument("--max-trials", type=int, help="perf_analyzer's --max-trials: the most windows per level before it gives up on stability (default 10).")
    parser.add_argument("--baseline-requests", type=int, help="Timed in-process requests per model and baseline runtime (default 20; 3 with --quick).")
    parser.add_argument("--photo", type=Path, action="append", help="A photo to benchmark with; repeat for several (default: scikit-image's chelsea, coffee and astronaut photos).")
    parser.add_argument("--out", type=Path, default=Path("perf/results"), help="Where the run's folder (<timestamp>-<host>/) with the report, CSVs and plots is written.")
    parser.add_argument("--tools-dir", type=Path, help="Where perf_analyzer is fetched to when it is not on PATH (default: .tools/ of the checkout, or $SAM_TRITON_TOOLS).")
    parser.add_argument("--run-timeout", type=float, default=1800.0, help="Seconds one perf_analyzer run (one model at one concurrency) may take before it is stopped.")


def options_from_args(args: argparse.Namespace):
    """The parsed flags -> PerfOptions (quick-mode defaults where a flag was not given)."""
    from sam_triton.build.pipeline import ModelChoice
    from sam_triton.build.tritonserver import default_cache_dir

    from . import options as o
    from .analyzer import Measurement

    window_flags = ("measurement_mode", "measurement_interval", "measurement_request_count",
                    "encoder_measurement_request_count", "stability_percentage", "max_trials")
    windows = not args.quick or any(getattr(args, name) is not None for name in window_flags)

    def measurement(request_count, default: Measurement) -> Measurement:
        def pick(value, fallback):
            return fallback if value is None else value

        return Measurement(
            mode=pick(args.measurement_mode, default.mode), interval_ms=pick(args.measurement_interval, default.interval_ms),
            request_count=pick(request_count, default.request_count),
            stability_percentage=pick(args.stability_percentage, default.stability_percentage),
            max_trials=pick(args.max_trials, default.max_trials),
        )

    decoder_levels = args.concurrency or (o.QUICK_DECODER_CONCURRENCY if args.quick else o.FULL_CONCURRENCY)
    encoder_levels = args.encoder_concurrency or args.concurrency or (o.QUICK_ENCODER_CONCURRENCY if args.quick else o.FULL_CONCURRENCY)
    return o.PerfOptions(
        model=ModelChoice(checkpoint=args.checkpoint, model_type=args.preset or args.model_type, seed=args.seed),
        repository=args.repository, cache_dir=args.cache_dir or default_cache_dir(), results_dir=args.out,
        runtime=args.runtime, url=args.url, tritonserver=args.tritonserver,
        check_image=args.image, check_export=not args.skip_check, photos=tuple(args.photo or ()),
        decoder_concurrency=decoder_levels, encoder_concurrency=encoder_levels,
        decoder_measurement=measurement(args.measurement_request_count, o.FULL_DECODER_MEASUREMENT) if windows else o.QUICK_DECODER_MEASUREMENT,
        encoder_measurement=measurement(args.encoder_measurement_request_count, o.FULL_ENCODER_MEASUREMENT) if windows else o.QUICK_ENCODER_MEASUREMENT,
        baseline_requests=args.baseline_requests or (o.QUICK_BASELINE_REQUESTS if args.quick else o.FULL_BASELINE_REQUESTS),
        quick=args.quick, tools_dir=args.tools_dir, run_timeout_s=args.run_timeout,
        command_line=shlex.join(["sam-triton", *getattr(args, "argv", sys.argv[1:])]),
    )


def run(args: argparse.Namespace) -> int:
    from .report import ratio_table
    from .runner import run_benchmark

    run = run_benchmark(options_from_args(args))
    print(f"wrote {run.run_dir / 'report.md'} (perf_analyzer CSVs, plots and results.json beside it)\n")
    print(ratio_table(run.ratios))
    return 0
