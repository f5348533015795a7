"""`sam-triton soak`: its flags, the one SoakOptions they make, and the figures it prints and writes
(``soak.json`` and ``soak.md`` in ``--out``). Exits 1 when the soak found a problem."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import arguments as a


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a.add_repository_argument(parser, "The model repository to serve (built, with its model files), e.g. by `sam-triton build`.")
    parser.add_argument("--duration", type=float, default=600.0, help="Seconds of load, the warm-up included.")
    parser.add_argument("--warmup", type=float, default=60.0, help="Seconds of load before the server's memory is first measured.")
    parser.add_argument(
        "--concurrency", type=int, default=16, help="Requests perf_analyzer keeps in flight on each of sam_decoder and sam."
    )
    parser.add_argument(
        "--rss-tolerance",
        type=float,
        default=0.10,
        help="The largest change of the server's RSS after the warm-up that passes, as a fraction (0.10 is 10 %%).",
    )
    parser.add_argument(
        "--photo",
        type=Path,
        action="append",
        help="A photo for the requests; repeat for several (default: scikit-image's chelsea, coffee and astronaut photos).",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("perf/soak"),
        help="Where soak.json, soak.md, the server log and perf_analyzer's CSVs and logs are written.",
    )
    parser.add_argument("--tritonserver", type=Path, help="Start this tritonserver binary instead of the embedded one.")
    parser.add_argument(
        "--tools-dir",
        type=Path,
        help="Where perf_analyzer is fetched to when it is not on PATH (default: .tools/ of the checkout, or $SAM_TRITON_TOOLS).",
    )
    a.add_cache_argument(parser)


def options_from_args(args: argparse.Namespace):
    from sam_triton.perf.soak.runner import SoakOptions

    return SoakOptions(
        repository=args.repository,
        out_dir=args.out,
        cache_dir=a.cache_dir(args),
        duration_s=args.duration,
        warmup_s=args.warmup,
        concurrency=args.concurrency,
        rss_tolerance=args.rss_tolerance,
        photos=tuple(args.photo or ()),
        tritonserver=args.tritonserver,
        tools_dir=args.tools_dir,
    )


def figures(result) -> dict:
    """The soak's figures as plain data (soak.json)."""
    mib = 2**20
    return {
        "server": result.server,
        "load_s": round(result.load_s, 1),
        "warmup_s": result.options.warmup_s,
        "concurrency": result.options.concurrency,
        "models": {
            model: {
                "requests_succeeded": load.succeeded,
                "requests_failed": load.failed,
                "perf_analyzer_rounds": load.rounds,
                "perf_analyzer_failures": load.failed_rounds,
                "throughput_infer_per_s": round(load.throughput, 2),
                "server_requests_per_s": round(load.succeeded / result.load_s, 2),
            }
            for model, load in result.loads.items()
        },
        "rss_mib": {
            "after_warmup": round(result.rss_start / mib, 1),
            "end": round(result.rss_end / mib, 1),
            "max_after_warmup": round(result.rss_max / mib, 1),
            "change": round(result.rss_change, 4),
            "tolerance": result.options.rss_tolerance,
        },
        "rss_processes": {"after_warmup": result.rss_at(result.options.warmup_s).describe(), "end": result.rss[-1][1].describe()},
        "rss_samples_mib": [[round(t, 1), round(tree.total_bytes / mib, 1)] for t, tree in result.rss],
        "probes_identical": result.probes_identical,
        "perf_analyzer_commands": result.commands,
        "problems": result.problems(),
    }


def summary(data: dict) -> str:
    """The figures as a Markdown table and a verdict (soak.md, and what the command prints)."""
    rss = data["rss_mib"]
    lines = [
        f"Soak of {data['server']}: {data['load_s']:.0f} s of load at concurrency {data['concurrency']} per model"
        f" ({data['warmup_s']:g} s warm-up).",
        "",
        "| model | requests served | failed | perf_analyzer infer/s | probe identical |",
        "|---|---|---|---|---|",
    ]
    for model, m in data["models"].items():
        failed = m["requests_failed"] + len(m["perf_analyzer_failures"])
        lines.append(
            f"| {model} | {m['requests_succeeded']} | {failed} | {m['throughput_infer_per_s']:.1f} | {data['probes_identical'][model]} |"
        )
    lines += [
        "",
        f"Server RSS (tritonserver + python stubs): {rss['after_warmup']:.0f} MiB after the warm-up, {rss['end']:.0f} MiB at"
        f" the end ({rss['change']:+.1%}; tolerance {rss['tolerance']:.0%}), at most {rss['max_after_warmup']:.0f} MiB.",
        "",
        "PASSED" if not data["problems"] else "FAILED: " + "; ".join(data["problems"]),
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from sam_triton.perf.soak.runner import run_soak

    result = run_soak(options_from_args(args))
    data = figures(result)
    (result.options.out_dir / "soak.json").write_text(json.dumps(data, indent=2))
    text = summary(data)
    (result.options.out_dir / "soak.md").write_text(text + "\n")
    print(text)
    if data["problems"]:
        print(f"sam-triton soak: the soak failed; see {result.options.out_dir}", file=sys.stderr)
        return 1
    return 0
