"""A bounded soak: perf_analyzer keeps ``sam_decoder`` and the ``sam`` ensemble busy at concurrency
16 for minutes, against a tritonserver started here on loopback ports, and checks that

- no request failed (Triton's own statistics, per model, and every perf_analyzer run);
- the server's memory stays flat after the warm-up: the RSS of tritonserver and its python stubs
  (summed over its process tree from /proc), median of the first 10 s after the warm-up against the
  median of the last 10 s under load, within ``rss_tolerance``;
- a fixed probe request (the first request of each model's data set, sent alone while the server
  is idle) has bit-identical outputs before and after.

The load is perf_analyzer's (issue 4's driver, ``run_sweep``), in rounds of a fixed request count
per concurrent client (``--request-count``), one thread per model, until the time is up; each
round's CSV and log are kept under ``<out>/perf_analyzer/<model>-<round>/``.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import tritonclient.grpc as grpcclient

from sam_triton.build.server.tritonserver import ServerConfig, TritonServer
from sam_triton.client import SamClient
from sam_triton.client.contract import DECODER_MODEL, DECODER_OUTPUTS, ENSEMBLE_MODEL
from sam_triton.client.transport.triton_io import infer_rpc

from ..benchmark.analyzer import Measurement, run_sweep
from ..benchmark.input_data import data_sets, write_input_data
from ..benchmark.install import PerfAnalyzer, ensure_perf_analyzer
from ..benchmark.workload import build_workload, load_photos
from .process_tree import TreeMemory, tree_memory

log = logging.getLogger(__name__)

#: The models under load.
LOADED = (DECODER_MODEL, ENSEMBLE_MODEL)
#: How long one perf_analyzer round should last: each round is sized (requests per concurrent
#: client) from the throughput of the one before, starting at one, so the load ends near the deadline.
ROUND_S = 10.0
RSS_WINDOW_S = 10.0
SERVER_READY_TIMEOUT_S = 900.0
STATS_TIMEOUT_S = 60.0


@dataclass(frozen=True, kw_only=True)
class SoakOptions:
    """One soak: ``duration_s`` of load (the first ``warmup_s`` of it a warm-up) at ``concurrency``."""

    repository: Path
    out_dir: Path
    cache_dir: Path
    duration_s: float = 600.0
    warmup_s: float = 60.0
    concurrency: int = 16
    rss_tolerance: float = 0.10
    photos: Tuple[Path, ...] = ()
    tritonserver: Optional[Path] = None
    tools_dir: Optional[Path] = None
    sample_interval_s: float = 1.0
    round_timeout_s: float = 900.0

    def __post_init__(self) -> None:
        if not 0 <= self.warmup_s <= self.duration_s - 2 * RSS_WINDOW_S:
            raise ValueError(
                f"--warmup ({self.warmup_s:g} s) must leave at least {2 * RSS_WINDOW_S:g} s of --duration"
                f" ({self.duration_s:g} s) for the memory check"
            )
        if self.concurrency < 1 or not 0 < self.rss_tolerance < 1:
            raise ValueError("concurrency must be >= 1 and rss_tolerance in (0, 1)")


@dataclass
class ModelLoad:
    """What one model went through: perf_analyzer rounds and Triton's counts over the soak."""

    rounds: int = 0
    failed_rounds: List[str] = field(default_factory=list)
    client_throughputs: List[float] = field(default_factory=list)  # perf_analyzer's infer/s per round
    succeeded: int = 0  # Triton's statistics: requests that succeeded during the soak
    failed: int = 0  # ... and that failed

    @property
    def throughput(self) -> float:
        """Mean of perf_analyzer's per-round throughput (infer/s)."""
        return statistics.fmean(self.client_throughputs) if self.client_throughputs else 0.0


@dataclass
class SoakResult:
    options: SoakOptions
    server: str
    loads: Dict[str, ModelLoad]
    rss: List[Tuple[float, TreeMemory]]  # (seconds since the load began, the server's process tree)
    rss_start: int
    rss_end: int
    probes_identical: Dict[str, bool]
    load_s: float
    commands: List[str]

    @property
    def rss_change(self) -> float:
        return (self.rss_end - self.rss_start) / self.rss_start

    @property
    def rss_max(self) -> int:
        return max(tree.total_bytes for t, tree in self.rss if t >= self.options.warmup_s)

    def rss_at(self, seconds: float) -> TreeMemory:
        """The sample nearest ``seconds`` after the load began."""
        return min(self.rss, key=lambda sample: abs(sample[0] - seconds))[1]

    def problems(self) -> List[str]:
        """Why the soak failed; empty when it passed."""
        found = [f"{model}: {load.failed} requests failed on the server" for model, load in self.loads.items() if load.failed]
        found += [f"{model}: perf_analyzer failed: {reason}" for model, load in self.loads.items() for reason in load.failed_rounds]
        if abs(self.rss_change) > self.options.rss_tolerance:
            found.append(f"server RSS changed by {self.rss_change:+.1%} after the warm-up (tolerance {self.options.rss_tolerance:.0%})")
        found += [f"{model}: the probe's outputs changed" for model, same in self.probes_identical.items() if not same]
        return found


def _counts(url: str) -> Dict[str, Tuple[int, int]]:
    """model -> (succeeded, failed) requests, from Triton's statistics API."""
    with grpcclient.InferenceServerClient(url) as raw:
        stats = raw.get_inference_statistics(as_json=True, client_timeout=STATS_TIMEOUT_S)["model_stats"]
    return {
        s["name"]: (int(s["inference_stats"]["success"].get("count", 0)), int(s["inference_stats"]["fail"].get("count", 0))) for s in stats
    }


def _probe(url: str, requests: Dict[str, Dict[str, np.ndarray]]) -> Dict[str, Dict[str, np.ndarray]]:
    """Each model's probe request, sent alone: model -> its outputs."""
    names = tuple(spec.name for spec in DECODER_OUTPUTS)
    outputs = {}
    with grpcclient.InferenceServerClient(url) as raw:
        for model, arrays in requests.items():
            rpc = infer_rpc(model, {name: array[None] for name, array in arrays.items()}, names, timeout_s=STATS_TIMEOUT_S)
            result = raw.infer(**rpc.kwargs)
            outputs[model] = {name: result.as_numpy(name) for name in names}
    return outputs


def _embeddings(url: str, photos) -> Dict[str, np.ndarray]:
    """Each photo's 256x64x64 embedding, computed by the served encoder."""
    with SamClient(url, transport="grpc", timeout_s=STATS_TIMEOUT_S * 5) as client:
        found = {}
        for photo in photos:
            client.set_image(photo.image)
            found[photo.name] = client.get_image_embedding()[0]
        return found


class _RssSampler(threading.Thread):
    """Samples the RSS of a process tree every ``interval_s`` until stopped."""

    def __init__(self, pid: int, interval_s: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval_s = pid, interval_s
        self.samples: List[Tuple[float, TreeMemory]] = []
        self.stopped = threading.Event()
        self.start_time = time.monotonic()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.samples.append((time.monotonic() - self.start_time, tree_memory(self.pid)))
            self.stopped.wait(self.interval_s)


def _window_median(samples: List[Tuple[float, TreeMemory]], start: float, stop: float) -> int:
    inside = [tree.total_bytes for t, tree in samples if start <= t <= stop]
    if not inside:
        raise RuntimeError(f"no RSS sample between {start:.0f} s and {stop:.0f} s of the load")
    return int(statistics.median(inside))


def _load(
    tool: PerfAnalyzer, options: SoakOptions, url: str, model: str, data: Path, deadline: float, load: ModelLoad, commands: List[str]
) -> None:
    """perf_analyzer rounds on ``model`` until ``deadline`` (monotonic seconds), each of about ROUND_S."""
    per_client = 1
    while time.monotonic() < deadline:
        sweep = run_sweep(
            tool,
            label=model,
            model=model,
            url=url,
            input_data=data,
            concurrencies=[options.concurrency],
            measurement=Measurement(rounds=per_client, stabilize=False),
            out_dir=options.out_dir / "perf_analyzer" / f"{model}-{load.rounds:03d}",
            timeout_s=options.round_timeout_s,
        )
        load.rounds += 1
        if load.rounds == 1:
            commands.extend(sweep.commands)
        load.failed_rounds.extend(sweep.failures.values())
        load.client_throughputs.extend(level.throughput for level in sweep.levels)
        if sweep.failures:
            return  # the soak has failed already; more rounds would only repeat the error
        if sweep.levels:
            per_request_s = options.concurrency / max(sweep.levels[0].throughput, 1e-3)
            per_client = max(1, int(min(ROUND_S, deadline - time.monotonic()) / per_request_s))


def run_soak(options: SoakOptions) -> SoakResult:
    """Start the server, probe it, load it for ``duration_s`` while sampling its memory, probe again."""
    options.out_dir.mkdir(parents=True, exist_ok=True)
    tool = ensure_perf_analyzer(options.tools_dir)
    workload = build_workload(load_photos(options.photos))
    config = ServerConfig.on_free_ports(options.repository, tritonserver=options.tritonserver)
    server = TritonServer(config, log_path=options.out_dir / "tritonserver.log", cache_dir=options.cache_dir)
    server.start(timeout_s=SERVER_READY_TIMEOUT_S)
    try:
        url = config.grpc_url
        embeddings = _embeddings(url, workload.photos)
        files = write_input_data(workload, embeddings, options.out_dir / "input_data")
        sets = data_sets(workload, embeddings)
        probe_requests = {model: sets[model][1][0] for model in LOADED}
        before = _probe(url, probe_requests)
        counts_before = _counts(url)
        loads = {model: ModelLoad() for model in LOADED}
        commands: List[str] = []
        sampler = _RssSampler(server.process.pid, options.sample_interval_s)
        sampler.start()
        deadline = sampler.start_time + options.duration_s
        threads = [
            threading.Thread(target=_load, args=(tool, options, url, model, files[model][1], deadline, loads[model], commands))
            for model in LOADED
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if server.process.poll() is not None:
            raise RuntimeError(
                f"tritonserver exited with code {server.process.returncode} during the soak;"
                f" its log: {options.out_dir / 'tritonserver.log'}"
            )
        load_s = time.monotonic() - sampler.start_time
        sampler.stopped.set()
        sampler.join()
        counts_after = _counts(url)
        for model, load in loads.items():
            load.succeeded = counts_after[model][0] - counts_before[model][0]
            load.failed = counts_after[model][1] - counts_before[model][1]
        after = _probe(url, probe_requests)
    finally:
        server.stop()
    samples = sampler.samples
    last = min(options.duration_s, max(t for t, _ in samples))
    return SoakResult(
        options=options,
        server=f"{config.grpc_url}, {options.repository}",
        loads=loads,
        rss=samples,
        rss_start=_window_median(samples, options.warmup_s, options.warmup_s + RSS_WINDOW_S),
        rss_end=_window_median(samples, last - RSS_WINDOW_S, last),
        probes_identical={m: all(np.array_equal(before[m][n], after[m][n]) for n in before[m]) for m in LOADED},
        load_s=load_s,
        commands=commands,
    )
