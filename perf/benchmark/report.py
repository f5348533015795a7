"""Write a run's ``report.md`` and ``results.json``: tables, ratios, settings, machine, commands.

The report says which figure came from which runner and machine: Triton rows are perf_analyzer's
measurements of the served repository; in-process rows are this process's own timings.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .analyzer import Level, Sweep
from .baselines import RUNNER_NAMES, Baseline
from .first_mask import FirstMask, first_mask_table
from .ratios import Ratio

UNSTABLE = "†"


@dataclass
class BenchmarkRun:
    """Everything one run measured and how: the report's single input."""

    title: str
    run_dir: Path
    started: str
    command_line: str
    model: str  # where the weights came from
    triton: str  # what served the models, and how perf_analyzer reached it
    triton_label: str  # short name of the Triton runner for tables and legends
    perf_analyzer: str
    perf_analyzer_env: str
    machine: Dict[str, object]
    workload: str
    input_data: Dict[str, Path]
    sweeps: Dict[str, Sweep]
    baselines: List[Baseline]
    ratios: List[Ratio]
    plots: Dict[str, Dict[str, Path]] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)
    duration_s: float = 0.0
    model_type: str = ""
    first_masks: List[FirstMask] = field(default_factory=list)  # time to first mask, served and in-process


def _ms(us: Optional[float]) -> str:
    return "—" if us is None else f"{us / 1e3:.1f}"


def _ratio_value(ratio: Ratio) -> str:
    return f"**{ratio.value:.2f}x**" if ratio.value is not None else f"not measured ({ratio.missing})"


def ratio_table(ratios: Sequence[Ratio]) -> str:
    lines = ["| ratio | value | from |", "|---|---|---|"]
    lines += [f"| {r.name} | {_ratio_value(r)} | {r.formula} |" for r in ratios]
    return "\n".join(lines)


def _triton_row(label: str, level: Level) -> str:
    s = level.server
    return (
        f"| {label} | {level.concurrency}{'' if level.stable else ' ' + UNSTABLE} | {level.throughput:.2f} | {_ms(level.p50_us)} | {_ms(level.p90_us)} | "
        f"{_ms(level.p99_us)} | {_ms(s.queue_us)} | {_ms(s.compute_us)} | {s.avg_batch:.2f} |"
    )


def _baseline_row(b: Baseline) -> str:
    return (
        f"| {RUNNER_NAMES[b.runtime]} | 1 | {b.throughput:.2f} | {_ms(b.percentile_us(50))} | {_ms(b.percentile_us(90))} | "
        f"{_ms(b.percentile_us(99))} | — | {_ms(sum(b.latencies_us) / len(b.latencies_us))} (all of it) | 1 |"
    )


def model_table(sweep: Sweep, baselines: Sequence[Baseline], triton_label: str) -> str:
    lines = [
        "| runner | concurrency | throughput (req/s) | p50 (ms) | p90 (ms) | p99 (ms) | server queue (ms) | server compute (ms) | avg batch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_triton_row(triton_label, level) for level in sorted(sweep.levels, key=lambda lv: lv.concurrency)]
    lines += [_baseline_row(b) for b in baselines if b.model == sweep.label]  # baselines ran the mixed prompts
    for concurrency, reason in sorted(sweep.failures.items()):
        lines.append(f"| {triton_label} | {concurrency} | not measured: {reason} | | | | | | |")
    if any(not level.stable for level in sweep.levels):
        lines += [
            "",
            f"{UNSTABLE} perf_analyzer found no 3 consecutive windows within the stability percentage in "
            f"{sweep.measurement.max_trials} windows at this level; the row is one measurement of the same number of "
            "requests without the stability check (`--request-count`), and is less certain than the others.",
        ]
    return "\n".join(lines)


def composing_table(sweep: Sweep) -> str:
    rows = [
        (level.concurrency, name, stats) for level in sorted(sweep.levels, key=lambda lv: lv.concurrency) for name, stats in level.composing
    ]
    if not rows:
        return ""
    lines = [
        "Inside the ensemble (Triton's per-model statistics):",
        "",
        "| concurrency | composing model | server queue (ms) | server compute (ms) | avg batch |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {c} | {name} | {_ms(s.queue_us)} | {_ms(s.compute_us)} | {s.avg_batch:.2f} |" for c, name, s in rows]
    return "\n".join(lines)


def _machine_lines(machine: Mapping[str, Any]) -> List[str]:
    versions = machine.get("versions", {})
    lines = [f"- {key}: {value}" for key, value in machine.items() if key != "versions"]
    lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return lines


def render(run: BenchmarkRun) -> str:
    machine = run.machine
    where = f"{machine['cpu']}, {machine['usable_cores']} usable cores, GPU: {machine['gpu']}"
    out = [
        f"# {run.title}",
        "",
        f"Measured {run.started} on `{machine['host']}` ({where}) in one run of {run.duration_s:.0f} s.",
        "",
        "**Where each figure comes from.** " + run.triton + " In-process rows: ONNX Runtime and PyTorch in the benchmark's "
        "own Python process on the same CPU, one request at a time, same model and same requests. "
        "Every figure here was measured on this machine; nothing is extrapolated to a GPU or to another machine.",
        "",
        f"Model: {run.model}.",
        "",
        *[f"- {note}" for note in run.notes],
        "",
        "## Headline ratios",
        "",
        ratio_table(run.ratios),
        "",
        "**Reading the tables.** Latencies are client-side: perf_analyzer's gRPC round trip, or the in-process call for "
        "the baselines. Server queue and compute are Triton's per-request averages from perf_analyzer's server-side "
        "summary; for the ensemble they are summed over its composing models. Avg batch = inferences / executions on the "
        "server: dynamic batching merges only requests of equal shapes, which is why the single-click data set exists. "
        "The in-process baselines ran the mixed prompts, so they appear beside sam_encoder, sam_decoder and sam.",
        "",
    ]
    if run.first_masks:
        out += [
            "## Time to first mask",
            "",
            "Opening a photo and getting the first click's masks, per runner (the served figure is measured with"
            " SamClient after the sweeps; the precision is the served encoder's, in the Triton label).",
            "",
            first_mask_table(run.model_type, run.first_masks),
            "",
        ]
    for label, sweep in run.sweeps.items():
        out += [
            f"## {label}",
            "",
            f"perf_analyzer settings: {sweep.measurement.describe()}; input data `{run.input_data[label].relative_to(run.run_dir)}`.",
            "",
            model_table(sweep, run.baselines, run.triton_label),
            "",
        ]
        composing = composing_table(sweep)
        if composing:
            out += [composing, ""]
        for kind, path in run.plots.get(label, {}).items():
            out.append(f"![{label} {kind}]({path.relative_to(run.run_dir)})")
        out.append("")
    out += [
        "## Workload",
        "",
        run.workload,
        "",
        "Input data (perf_analyzer `--input-data`, usable by Model Analyzer's `perf_analyzer_flags` too): "
        + ", ".join(f"`{p.relative_to(run.run_dir)}` ({label})" for label, p in run.input_data.items())
        + ".",
        "",
        "## Machine",
        "",
        *_machine_lines(machine),
        "",
        "## Commands",
        "",
        "The run:",
        "",
        "```bash",
        run.command_line,
        "```",
        "",
        f"perf_analyzer ({run.perf_analyzer}), one process per model and concurrency, with {run.perf_analyzer_env}:",
        "",
        "```bash",
        *[c for sweep in run.sweeps.values() for c in sweep.commands],
        "```",
        "",
    ]
    return "\n".join(out)


def _jsonable(value):
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serializable: {type(value).__name__}")


def write_report(run: BenchmarkRun) -> Path:
    """Write ``report.md`` and ``results.json`` into the run's folder; returns the report's path."""
    report = run.run_dir / "report.md"
    report.write_text(render(run))
    data = asdict(run)
    for baseline, entry in zip(run.baselines, data["baselines"]):
        entry.update({f"p{q}_us": baseline.percentile_us(q) for q in (50, 90, 99)}, throughput=baseline.throughput)
    (run.run_dir / "results.json").write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
    return report
