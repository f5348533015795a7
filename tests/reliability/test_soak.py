"""The soak in its short form (a minute): `sam-triton soak` with real perf_analyzer at concurrency 16
on sam_decoder and the sam ensemble, against its own tritonserver. The long form is the same
command with --duration 900 --warmup 300 (README, Reliability and security)."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np

from sam_triton.cli.main import main
from sam_triton.perf.benchmark.analyzer import parse_csv

from ..helpers import IMAGE_NAMES, IMAGES_DIR

DURATION_S, WARMUP_S = 60, 40


def test_short_soak(python_repository, cache_dir, tmp_path):
    photos = [arg for name in IMAGE_NAMES for arg in ("--photo", str(IMAGES_DIR / f"{name}.jpg"))]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(
            [
                "soak",
                "--repository",
                str(python_repository),
                "--duration",
                str(DURATION_S),
                "--warmup",
                str(WARMUP_S),
                *photos,
                "--out",
                str(tmp_path),
                "--cache-dir",
                str(cache_dir),
            ]
        )
    print(printed.getvalue())
    data = json.loads((tmp_path / "soak.json").read_text())
    print(json.dumps(data["rss_processes"], indent=1))
    assert code == 0 and data["problems"] == [], data["problems"]
    assert DURATION_S <= data["load_s"] < DURATION_S + 120
    for model in ("sam_decoder", "sam"):
        figures = data["models"][model]
        assert figures["requests_failed"] == 0 and figures["perf_analyzer_failures"] == []
        assert figures["requests_succeeded"] >= 16 and figures["perf_analyzer_rounds"] >= 2
        assert data["probes_identical"][model] is True
        # the throughput reported is perf_analyzer's own, parsed from each round's CSV
        rounds = sorted((tmp_path / "perf_analyzer").glob(f"{model}-*/*.csv"))
        assert len(rounds) == figures["perf_analyzer_rounds"]
        measured = [parse_csv(path)[0]["Inferences/Second"] for path in rounds]
        assert np.isclose(np.mean(measured), figures["throughput_infer_per_s"], atol=0.01)
        assert all(int(parse_csv(path)[0]["Concurrency"]) == 16 for path in rounds)
    rss = data["rss_mib"]
    assert abs(rss["end"] - rss["after_warmup"]) <= 0.10 * rss["after_warmup"]
    assert "| sam_decoder |" in printed.getvalue() and "PASSED" in printed.getvalue()
    assert (tmp_path / "soak.md").read_text().strip() == printed.getvalue().strip()
