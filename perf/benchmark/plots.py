"""PNG plots of one run (matplotlib, headless Agg): per model, throughput vs concurrency and
p50 latency vs throughput, Triton's sweep as a line and each in-process baseline as a marked point
(baselines run one request at a time, so they have one point: concurrency 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Mapping, Sequence

from .analyzer import Sweep
from .baselines import RUNNER_NAMES, Baseline
from .input_data import file_name

BASELINE_STYLE = {  # marker and colour of each in-process baseline; labels are RUNNER_NAMES
    "onnxruntime": ("s", "tab:green"),
    "openvino-fp32": ("D", "tab:purple"),
    "openvino-bf16": ("v", "tab:orange"),
    "openvino-int8": ("P", "tab:brown"),
    "pytorch": ("^", "tab:red"),
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _mark_unstable(ax, points) -> None:
    """Hollow markers on levels perf_analyzer could not stabilize (the report's †)."""
    if points:
        xs, ys = zip(*points)
        ax.plot(xs, ys, "o", color="tab:blue", markerfacecolor="white", markersize=8, label="† not stabilized (one measurement)")


def plot_model(sweep: Sweep, baselines: Sequence[Baseline], out_dir: Path, *, triton_label: str, where: str) -> Dict[str, Path]:
    """Two PNGs for one model; returns {"throughput": path, "latency": path}."""
    plt = _pyplot()
    levels = sorted(sweep.levels, key=lambda level: level.concurrency)
    mine = [b for b in baselines if b.model == sweep.label]  # baselines ran the mixed prompts only
    paths = {}

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot([lv.concurrency for lv in levels], [lv.throughput for lv in levels], "o-", color="tab:blue", label=triton_label)
    _mark_unstable(ax, [(lv.concurrency, lv.throughput) for lv in levels if not lv.stable])
    for b in mine:
        (marker, color), label = BASELINE_STYLE[b.runtime], RUNNER_NAMES[b.runtime]
        ax.plot([1], [b.throughput], marker, color=color, markersize=9, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks([lv.concurrency for lv in levels] or [1], [str(lv.concurrency) for lv in levels] or ["1"])
    ax.set(xlabel="concurrent requests", ylabel="throughput (requests/s)", title=f"{sweep.label}: throughput vs concurrency\n{where}")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    paths["throughput"] = _save(fig, Path(out_dir) / f"{file_name(sweep.label)}-throughput.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot([lv.throughput for lv in levels], [lv.p50_us / 1e3 for lv in levels], "o-", color="tab:blue", label=f"{triton_label} (p50)")
    _mark_unstable(ax, [(lv.throughput, lv.p50_us / 1e3) for lv in levels if not lv.stable])
    for lv in levels:
        ax.annotate(f"c={lv.concurrency}", (lv.throughput, lv.p50_us / 1e3), textcoords="offset points", xytext=(4, 4), fontsize=7)
    for b in mine:
        (marker, color), label = BASELINE_STYLE[b.runtime], RUNNER_NAMES[b.runtime]
        ax.plot([b.throughput], [b.percentile_us(50) / 1e3], marker, color=color, markersize=9, label=f"{label} (p50)")
    ax.set(xlabel="throughput (requests/s)", ylabel="p50 latency (ms)", title=f"{sweep.label}: latency vs throughput\n{where}")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    paths["latency"] = _save(fig, Path(out_dir) / f"{file_name(sweep.label)}-latency.png")
    plt.close(fig)
    return paths


def plot_all(
    sweeps: Mapping[str, Sweep], baselines: Sequence[Baseline], out_dir: Path, *, triton_label: str, where: str
) -> Dict[str, Dict[str, Path]]:
    """label -> {"throughput": png, "latency": png}, written into ``out_dir``."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return {label: plot_model(sweep, baselines, out_dir, triton_label=triton_label, where=where) for label, sweep in sweeps.items()}
