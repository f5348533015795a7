"""Run perf_analyzer over a concurrency sweep and read back its CSV and its server-side summary.

One perf_analyzer process per (model, concurrency): the sweep 1, 2, 4, 8, 16 is not an arithmetic
``--concurrency-range``, and a level that fails to stabilize is then recorded as a failure instead
of losing the whole sweep. Client-side figures (throughput, latency percentiles) come from the
``-f`` CSV. The server's queue/compute split comes from perf_analyzer's printed server summary
(Triton's statistics extension): for an ensemble the CSV folds the composing models' queue time
into "Network+Server Send/Recv", while the summary sums it correctly. All times are microseconds.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .install import PerfAnalyzer

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Measurement:
    """perf_analyzer's measurement and stability settings for one model (recorded in the report).

    Windows scale with concurrency: each holds ``rounds`` requests per concurrent client
    (``--measurement-request-count`` = rounds x concurrency), so that a window at concurrency 16
    spans as many rounds of requests as one at concurrency 1; with dynamic batching, shorter windows
    at high concurrency catch a few bursts and never stabilize. ``stabilize=False`` (the quick mode)
    takes one measurement of rounds x concurrency requests (``--request-count``), no stability check.
    """

    mode: str = "count_windows"  # --measurement-mode: count_windows | time_windows
    interval_ms: int = 5000  # --measurement-interval: the window (time_windows) or its first length
    rounds: int = 10  # requests per window per concurrent client (count_windows)
    stability_percentage: float = 10.0  # --stability-percentage
    max_trials: int = 10  # --max-trials
    stabilize: bool = True

    def __post_init__(self) -> None:
        if self.mode not in ("count_windows", "time_windows"):
            raise ValueError(f"measurement mode {self.mode!r}: expected count_windows or time_windows")
        if self.rounds < 1:
            raise ValueError(f"window rounds must be >= 1, got {self.rounds}")

    def flags(self, concurrency: int) -> List[str]:
        if not self.stabilize:
            return ["--request-count", str(self.rounds * concurrency)]
        flags = ["--measurement-mode", self.mode, "--measurement-interval", str(self.interval_ms)]
        if self.mode == "count_windows":
            flags += ["--measurement-request-count", str(self.rounds * concurrency)]
        return flags + ["--stability-percentage", f"{self.stability_percentage:g}", "--max-trials", str(self.max_trials)]

    def describe(self) -> str:
        if not self.stabilize:
            return f"one measurement of {self.rounds} x concurrency requests (--request-count), no stability check"
        window = (
            f"windows of {self.rounds} x concurrency requests (--measurement-request-count)"
            if self.mode == "count_windows"
            else f"{self.interval_ms} ms windows"
        )
        return (
            f"{self.mode}: {window}, stable when 3 consecutive windows agree within {self.stability_percentage:g}% "
            f"(--stability-percentage) in throughput and latency, at most {self.max_trials} windows (--max-trials)"
        )


@dataclass(frozen=True)
class ServerStats:
    """Triton's per-request averages for one level (us): queue, compute, and how often it batched."""

    request_us: float
    queue_us: float
    compute_us: float
    inference_count: int
    execution_count: int

    @property
    def avg_batch(self) -> float:
        return self.inference_count / self.execution_count if self.execution_count else 0.0


@dataclass(frozen=True)
class Level:
    """One concurrency level as perf_analyzer measured it (latencies in us, throughput in requests/s)."""

    concurrency: int
    throughput: float
    p50_us: float
    p90_us: float
    p95_us: float
    p99_us: float
    avg_us: float
    server: ServerStats
    composing: Tuple[Tuple[str, ServerStats], ...] = ()
    stable: bool = True  # False: perf_analyzer could not stabilize; one fixed-size measurement instead


@dataclass
class Sweep:
    """One data set's levels on a model, the levels perf_analyzer could not measure (with its reason)
    and the commands run. ``label`` names the data set (the model's name, or e.g. "sam_decoder, single clicks")."""

    label: str
    model: str
    measurement: Measurement
    levels: List[Level] = field(default_factory=list)
    failures: Dict[int, str] = field(default_factory=dict)
    commands: List[str] = field(default_factory=list)
    csv_files: List[Path] = field(default_factory=list)

    def at(self, concurrency: int) -> Optional[Level]:
        return next((level for level in self.levels if level.concurrency == concurrency), None)


CSV_FIELDS = {"p50_us": "p50 latency", "p90_us": "p90 latency", "p95_us": "p95 latency", "p99_us": "p99 latency", "avg_us": "Avg latency"}
_SERVER = re.compile(
    r"Inference count: (\d+)\s+Execution count: (\d+)\s+Successful request count: \d+\s+"
    r"Avg request latency: (\d+) usec \(overhead \d+ usec \+ queue (\d+) usec \+ "
    r"(?:compute input (\d+) usec \+ compute infer (\d+) usec \+ compute output (\d+) usec|compute (\d+) usec)\)"
)
_COMPOSING = re.compile(r"^\s*(\S+), version: \S*\s*$", re.M)


def _server_stats(match: "re.Match[str]") -> ServerStats:
    inferences, executions, request, queue, c_in, c_infer, c_out, compute = match.groups()
    total = float(compute) if compute is not None else float(c_in) + float(c_infer) + float(c_out)
    return ServerStats(
        request_us=float(request), queue_us=float(queue), compute_us=total, inference_count=int(inferences), execution_count=int(executions)
    )


def parse_server_summary(text: str) -> Tuple[ServerStats, Tuple[Tuple[str, ServerStats], ...]]:
    """The "Server:" block of perf_analyzer's output, and each composing model's block for an ensemble."""
    matches = list(_SERVER.finditer(text))
    if not matches:
        raise ValueError("perf_analyzer printed no server-side summary (Inference count ... Avg request latency)")
    names = [(m.start(), m.group(1)) for m in _COMPOSING.finditer(text)]
    composing = []
    for match in matches[1:]:
        name = [n for start, n in names if start < match.start()]
        composing.append((name[-1] if name else "?", _server_stats(match)))
    return _server_stats(matches[0]), tuple(composing)


def parse_csv(path: Path) -> List[Dict[str, float]]:
    """perf_analyzer's ``-f`` CSV (with --verbose-csv) -> one dict of floats per row."""
    with open(path, newline="") as f:
        rows = [{key: float(value) for key, value in row.items() if key and value not in (None, "")} for row in csv.DictReader(f)]
    if not rows:
        raise ValueError(f"{path}: perf_analyzer wrote no rows")
    return rows


def read_level(csv_path: Path, output: str) -> Level:
    row = parse_csv(csv_path)[0]
    server, composing = parse_server_summary(output)
    return Level(
        concurrency=int(row["Concurrency"]),
        throughput=row["Inferences/Second"],
        server=server,
        composing=composing,
        p50_us=row[CSV_FIELDS["p50_us"]],
        p90_us=row[CSV_FIELDS["p90_us"]],
        p95_us=row[CSV_FIELDS["p95_us"]],
        p99_us=row[CSV_FIELDS["p99_us"]],
        avg_us=row[CSV_FIELDS["avg_us"]],
    )


def _failure_reason(output: str, returncode: int) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "failed" in line.lower()]
    return (errors[-1] if errors else (lines[-1] if lines else "no output")) + f" (exit {returncode})"


def _run_once(
    tool: PerfAnalyzer, base: List[str], measurement: Measurement, concurrency: int, stem: Path, timeout_s: float
) -> Tuple[str, Optional[Level], str]:
    """One perf_analyzer process: (its command, the level or None, its failure reason)."""
    csv_path = stem.with_suffix(".csv")
    command = [*base, *measurement.flags(concurrency), "-f", str(csv_path), "--verbose-csv", "-v"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=tool.environment(), timeout=timeout_s)
        output, returncode = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired:
        output, returncode = f"perf_analyzer timed out after {timeout_s:.0f} s", -1
    stem.with_suffix(".log").write_text(f"$ {shlex.join(command)}\n{output}")
    if returncode != 0 or not csv_path.is_file():
        return shlex.join(command), None, _failure_reason(output, returncode)
    return shlex.join(command), read_level(csv_path, output), ""


def run_sweep(
    tool: PerfAnalyzer,
    *,
    label: str,
    model: str,
    url: str,
    input_data: Path,
    concurrencies: Sequence[int],
    measurement: Measurement,
    out_dir: Path,
    timeout_s: float,
) -> Sweep:
    """Run perf_analyzer once per concurrency against ``model`` at gRPC ``url`` with ``input_data``.

    CSVs and logs go to ``out_dir``, named after the input data file (``<stem>-c<concurrency>.csv``).
    A level that does not stabilize is measured once more without the stability check
    (``--request-count``, files ``*-unstable.*``) and kept with ``stable=False``; the report marks it.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sweep = Sweep(label=label, model=model, measurement=measurement)
    base = [str(tool.binary), "-m", model, "-u", url, "-i", "grpc", "--input-data", str(input_data)]
    for concurrency in concurrencies:
        stem = out_dir / f"{Path(input_data).stem}-c{concurrency}"
        log.info("perf_analyzer: %s at concurrency %d", label, concurrency)
        command, level, reason = _run_once(
            tool, [*base, "--concurrency-range", str(concurrency)], measurement, concurrency, stem, timeout_s
        )
        sweep.commands.append(command)
        if level is None and measurement.stabilize and "stable measurement" in reason:
            log.warning("%s at concurrency %d: %s; measuring once without the stability check", label, concurrency, reason)
            single = dataclasses.replace(measurement, stabilize=False)
            stem = stem.with_name(stem.name + "-unstable")
            command, level, reason = _run_once(tool, [*base, "--concurrency-range", str(concurrency)], single, concurrency, stem, timeout_s)
            sweep.commands.append(command)
            level = dataclasses.replace(level, stable=False) if level else None
        if level is None:
            sweep.failures[concurrency] = reason
            log.warning("perf_analyzer could not measure %s at concurrency %d: %s", label, concurrency, reason)
            continue
        sweep.levels.append(level)
        sweep.csv_files.append(stem.with_suffix(".csv"))
    return sweep
