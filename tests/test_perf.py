"""`sam-triton perf`: real perf_analyzer against a real tritonserver, real photos, real baselines.

No timing is asserted: speed is what the benchmark reports, not what a test checks. The tests
check that the report is complete and that every figure in it comes from parsed measurements.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.metadata
import io
import json
import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sam_triton.build.export.verify import rel_l2
from sam_triton.build.repository.openvino_options import cpu_capabilities
from sam_triton.cli.main import main
from sam_triton.client import contract
from sam_triton.perf.benchmark.analyzer import Measurement, parse_csv, run_sweep
from sam_triton.perf.benchmark.baselines import OrtRunner, TorchRunner, ort_embeddings
from sam_triton.perf.benchmark.input_data import SINGLE_CLICKS, decode_entry, file_name, write_input_data
from sam_triton.perf.benchmark.install import (
    PERF_ANALYZER_VERSION,
    WHEEL_PLATFORMS,
    PerfAnalyzer,
    ensure_perf_analyzer,
    fetch,
    link_libraries,
)
from sam_triton.perf.benchmark.workload import build_workload

from .helpers import IMAGE_NAMES, IMAGES_DIR

LABELS = (contract.ENCODER_MODEL, contract.DECODER_MODEL, SINGLE_CLICKS, contract.ENSEMBLE_MODEL)


@pytest.fixture(scope="module")
def workload(images):
    return build_workload([(name, images[name]) for name in IMAGE_NAMES])


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, tiny_onnx, cache_dir):
    """One `sam-triton perf --quick` run of the default (openvino) runtime on the tiny preset: (run folder, printed output)."""
    out = tmp_path_factory.mktemp("perf")
    repository = tmp_path_factory.mktemp("perf-repo") / "model_repository"
    photos = [arg for name in IMAGE_NAMES for arg in ("--photo", str(IMAGES_DIR / f"{name}.jpg"))]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(
            [
                "perf",
                "--preset",
                "tiny",
                "--runtime",
                "openvino",
                "--repository",
                str(repository),
                "--cache-dir",
                str(cache_dir),
                "--quick",
                *photos,
                "--out",
                str(out),
            ]
        )
    assert code == 0, printed.getvalue()
    runs = list(out.iterdir())
    assert len(runs) == 1
    return runs[0], printed.getvalue()


def test_quick_run_writes_a_complete_report(quick_run):
    run_dir, printed = quick_run
    assert re.fullmatch(rf"\d{{8}}-\d{{6}}-{re.escape(socket.gethostname())}", run_dir.name)
    report = (run_dir / "report.md").read_text()
    for heading in (
        "## Headline ratios",
        "## Time to first mask",
        *(f"## {label}\n" for label in LABELS),
        "## Workload",
        "## Machine",
        "## Commands",
    ):
        assert heading in report, heading
    # time to first mask: measured through the server, and encoder + decoder p50 of each in-process runtime
    first = [line for line in report.splitlines() if re.match(r"\| .+ \| `tiny` \| \d+\.\d{3} \| \d+\.\d{3} \| \d+\.\d %", line)]
    assert any("measured: set_image" in line for line in first) and any("encoder p50 + decoder p50" in line for line in first), first
    ratio_rows = [
        line
        for line in report.splitlines()
        if line.startswith("| ") and ("overhead" in line or "gain" in line or "ensemble vs" in line or "speed-up" in line)
    ]
    # 9, and OpenVINO FP32 (and BF16 where the CPU runs it) vs ONNX Runtime for the encoder and the decoder
    runs_bf16 = "BF16" in cpu_capabilities()["capabilities"]
    openvino_rows = 4 if runs_bf16 else 2
    assert len(ratio_rows) == 9 + openvino_rows and all(re.search(r"\*\*\d+\.\d\dx\*\*", row) for row in ratio_rows), ratio_rows
    # nothing left unmeasured, but BF16 on a CPU that cannot run it (the report says why)
    unmeasured = [line for line in report.splitlines() if "not measured" in line]
    assert all(not runs_bf16 and "OpenVINO BF16 was not measured: this CPU" in line for line in unmeasured), unmeasured
    # the served encoder runs OpenVINO FP32, the decoder ONNX Runtime: each is compared with its own engine in-process
    assert "| serving overhead, sam_encoder | **" in report and "Triton p50 at c=1 / OpenVINO FP32 in-process p50" in report
    assert "Triton p50 at c=1 / ONNX Runtime in-process p50" in report
    assert "Triton gRPC, python backend (encoder OpenVINO FP32, decoder ONNX Runtime)" in report
    assert "nothing is extrapolated to a GPU" in report and "--request-count" in report
    assert "| ratio | value | from |" in printed and str(run_dir / "report.md") in printed


def test_quick_run_results_come_from_parsed_perf_analyzer_csvs(quick_run):
    run_dir, _ = quick_run
    results = json.loads((run_dir / "results.json").read_text())
    expected_levels = {
        contract.ENCODER_MODEL: [1, 2],
        contract.DECODER_MODEL: [1, 8],
        SINGLE_CLICKS: [1, 8],
        contract.ENSEMBLE_MODEL: [1, 2],
    }
    assert sorted(results["sweeps"]) == sorted(LABELS)
    for label, sweep in results["sweeps"].items():
        assert sweep["failures"] == {}
        assert [level["concurrency"] for level in sweep["levels"]] == expected_levels[label]
        for level, csv_file in zip(sweep["levels"], sweep["csv_files"]):
            row = parse_csv(run_dir / "perf_analyzer" / csv_file.rsplit("/", 1)[-1])[0]
            assert int(row["Concurrency"]) == level["concurrency"]
            assert row["Inferences/Second"] == level["throughput"] > 0
            assert row["p50 latency"] == level["p50_us"] > 0 and level["p99_us"] >= level["p50_us"]
            assert level["server"]["compute_us"] > 0 and level["server"]["inference_count"] >= level["concurrency"]
        if label == contract.ENSEMBLE_MODEL:
            assert {name for name, _ in sweep["levels"][0]["composing"]} == {contract.ENCODER_MODEL, contract.DECODER_MODEL}
    runtimes = ["onnxruntime", "openvino-fp32", "pytorch"] + (["openvino-bf16"] if "BF16" in cpu_capabilities()["capabilities"] else [])
    assert {(b["runtime"], b["model"]) for b in results["baselines"]} == {
        (runtime, model) for runtime in runtimes for model in (contract.ENCODER_MODEL, contract.DECODER_MODEL, contract.ENSEMBLE_MODEL)
    }
    assert all(len(b["latencies_us"]) == 3 and min(b["latencies_us"]) > 0 for b in results["baselines"])
    assert all(r["value"] is not None and np.isfinite(r["value"]) and r["value"] > 0 for r in results["ratios"])


def test_quick_run_draws_every_plot(quick_run):
    run_dir, _ = quick_run
    report = (run_dir / "report.md").read_text()
    for label in LABELS:
        for kind in ("throughput", "latency"):
            png = run_dir / "plots" / f"{file_name(label)}-{kind}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
            assert f"(plots/{png.name})" in report


def test_report_lists_the_exact_perf_analyzer_commands(quick_run):
    run_dir, _ = quick_run
    report = (run_dir / "report.md").read_text()
    commands = [line for line in report.splitlines() if "perf_analyzer -m " in line]
    assert len(commands) == 8
    for command in commands:
        data = re.search(r"--input-data (\S+)", command).group(1)
        assert (run_dir / "input_data").as_posix() in data and "-i grpc" in command and "--verbose-csv" in command
    assert "sam-triton perf --preset tiny" in report


def test_input_data_holds_the_contract_tensors(workload, tiny_onnx, tmp_path):
    embeddings = ort_embeddings(OrtRunner(tiny_onnx[0]), workload.photos)
    written = write_input_data(workload, embeddings, tmp_path)
    assert sorted(written) == sorted(LABELS)
    specs = {spec.name: spec for spec in contract.ENSEMBLE_INPUTS + contract.DECODER_INPUTS}
    for _label, (model, path) in written.items():
        entries = json.loads(path.read_text())["data"]
        names = {
            contract.ENCODER_MODEL: contract.ENCODER_INPUTS,
            contract.DECODER_MODEL: contract.DECODER_INPUTS,
            contract.ENSEMBLE_MODEL: contract.ENSEMBLE_INPUTS,
        }[model]
        for entry in entries:
            assert sorted(entry) == sorted(spec.name for spec in names)
            arrays = {name: decode_entry(value, specs[name].numpy_dtype) for name, value in entry.items()}
            for name, array in arrays.items():
                fixed = [d for d in specs[name].dims]
                assert len(array.shape) == len(fixed) and all(d in (-1, got) for d, got in zip(fixed, array.shape)), (name, array.shape)
            if "point_coords" in arrays:
                assert arrays["point_labels"].shape == arrays["point_coords"].shape[:2]
    decoder = [json.loads(written[contract.DECODER_MODEL][1].read_text())["data"][k] for k in range(len(workload.cases))]
    for case, entry in zip(workload.cases, decoder):
        np.testing.assert_array_equal(decode_entry(entry["image_embeddings"], "float32"), embeddings[case.photo.name])
    clicks = json.loads(written[SINGLE_CLICKS][1].read_text())["data"]
    assert len(clicks) == len(IMAGE_NAMES) and {tuple(e["point_coords"]["shape"]) for e in clicks} == {(1, 2, 2)}
    assert len({tuple(e["point_coords"]["shape"]) for e in decoder}) > 1  # mixed prompts: several shapes


def test_pytorch_and_onnxruntime_baselines_run_the_same_model(workload, tiny_onnx, tiny_sam):
    ort, torch_runner = OrtRunner(tiny_onnx[0]), TorchRunner(tiny_sam)
    for case in workload.cases:
        iou, low_res = ort.decode(ort.encode(case.photo), case)
        torch_masks, torch_iou = torch_runner.decode(torch_runner.encode(case.photo), case)
        # SAM's multimask outputs are the decoder's outputs 1..3 (MaskDecoder.forward slices them)
        assert rel_l2(low_res[0][:, 1:], torch_masks.numpy()) < 1e-3, case.name
        np.testing.assert_allclose(iou[0][:, 1:], torch_iou.numpy(), atol=1e-3)


def test_a_level_perf_analyzer_cannot_measure_is_recorded(server, workload, tiny_onnx, tmp_path):
    written = write_input_data(workload, ort_embeddings(OrtRunner(tiny_onnx[0]), workload.photos), tmp_path / "data")
    sweep = run_sweep(
        ensure_perf_analyzer(),
        label="wrong inputs",
        model=contract.DECODER_MODEL,
        url=server.config.grpc_url,
        input_data=written[contract.ENCODER_MODEL][1],
        concurrencies=[1],
        measurement=Measurement(rounds=1, stabilize=False),
        out_dir=tmp_path / "pa",
        timeout_s=120,
    )
    assert sweep.levels == [] and list(sweep.failures) == [1]
    assert "Failed to init manager inputs: missing tensor" in sweep.failures[1], sweep.failures[1]
    assert (tmp_path / "pa" / "sam_encoder-c1.log").read_text().startswith("$ ")


def installed_tritonclient_wheel(folder: Path) -> Path:
    """tritonclient's manylinux wheel, rebuilt into ``folder`` from this environment's install of it:
    its perf_analyzer (checked against the sha256 pip recorded when installing the wheel) at the
    wheel's path, and its METADATA and WHEEL files. A local package index for the fetch, offline."""
    dist = importlib.metadata.distribution("tritonclient")
    binary = next((f for f in dist.files or () if f.name == "perf_analyzer" and "bin" in f.parts), None)
    if binary is None or binary.hash is None:
        pytest.skip("this environment's tritonclient was not installed from its manylinux wheel (no bin/perf_analyzer in its RECORD)")
    data = binary.locate().read_bytes()
    assert base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode() == binary.hash.value
    wheel = folder / f"tritonclient-{dist.version}-py3-none-{WHEEL_PLATFORMS['x86_64']}.whl"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"tritonclient-{dist.version}.data/data/bin/perf_analyzer", data)
        for name in ("METADATA", "WHEEL"):
            archive.writestr(f"tritonclient-{dist.version}.dist-info/{name}", dist.read_text(name))
        archive.writestr(f"tritonclient-{dist.version}.dist-info/RECORD", "")
    return wheel


def assert_fetched_binary_runs(tools: Path, home: Path) -> None:
    missing = link_libraries(tools / "lib")
    tool = PerfAnalyzer(home / "bin" / "perf_analyzer", (tools / "lib",))
    assert missing == [] and f"Perf Analyzer Version {PERF_ANALYZER_VERSION}" in tool.version()
    again = ensure_perf_analyzer(tools)
    assert again.version() == tool.version()


def test_perf_analyzer_recipe_fetches_a_runnable_binary(tmp_path):
    """The DEVELOPERS.md recipe on a clean tools folder, offline: pip downloads the tritonclient wheel
    from a local folder holding it (--no-index --find-links), the binary is unpacked, linked and run."""
    index = tmp_path / "index"
    installed_tritonclient_wheel(index)
    home = fetch(tmp_path / "tools", find_links=index)
    assert_fetched_binary_runs(tmp_path / "tools", home)


def package_index() -> str:
    """The index pip uses here: $PIP_INDEX_URL, pip's configuration, else PyPI."""
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"]
    done = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.index-url"], capture_output=True, text=True, timeout=60)
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "https://pypi.org/simple"


def test_perf_analyzer_recipe_fetches_from_the_package_index(tmp_path):
    """The same recipe as a user runs it: pip downloads the wheel from the package index (skipped,
    saying why, where the index cannot be reached)."""
    index = package_index()
    try:
        with urllib.request.urlopen(f"{index.rstrip('/')}/tritonclient/", timeout=15):
            pass
    except (urllib.error.URLError, OSError) as exc:
        pytest.skip(f"the package index {index} is unreachable from here ({exc}); the offline recipe test covers the rest")
    home = fetch(tmp_path)
    assert_fetched_binary_runs(tmp_path, home)


def test_perf_rejects_bad_concurrency(capsys):
    with pytest.raises(SystemExit):
        main(["perf", "--preset", "tiny", "--repository", "r", "--concurrency", "1,x"])
    assert "expected comma-separated integers" in capsys.readouterr().err


def test_perf_precision_needs_an_openvino_runtime(capsys, tmp_path):
    code = main(
        [
            "perf",
            "--preset",
            "tiny",
            "--runtime",
            "python",
            "--precision",
            "int8",
            "--repository",
            str(tmp_path / "r"),
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 1
    assert "--precision int8: applies with --runtime openvino or openvino-backend (got python)" in capsys.readouterr().err


def test_perf_against_a_running_server_with_url(grpc_url, python_repository, cache_dir, tmp_path):
    code = main(
        [
            "perf",
            "--preset",
            "tiny",
            "--repository",
            str(python_repository),
            "--cache-dir",
            str(cache_dir),
            "--url",
            grpc_url,
            "--quick",
            "--concurrency",
            "1",
            "--baseline-requests",
            "1",
            "--photo",
            str(IMAGES_DIR / "dog.jpg"),
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    (run_dir,) = tmp_path.iterdir()
    report = (run_dir / "report.md").read_text()
    assert f"a running tritonserver at {grpc_url} (--url)" in report and "tritonserver.log" not in {p.name for p in run_dir.iterdir()}
    assert (
        "| dynamic-batching gain, sam_decoder (mixed prompts) | not measured (needs sam_decoder measured at concurrency 1 and 8) |"
        in report
    )
    assert report.count("**") >= 2 * 7  # the other seven ratios were measured


def test_quick_mode_measures_once_unless_a_stability_flag_is_given():
    from sam_triton.cli.main import build_parser
    from sam_triton.cli.perf import options_from_args

    def options(*flags):
        return options_from_args(build_parser().parse_args(["perf", "--preset", "tiny", "--repository", "r", *flags]))

    quick = options("--quick")
    assert quick.decoder_concurrency == (1, 8) and quick.encoder_concurrency == (1, 2) and quick.baseline_requests == 3
    assert quick.decoder_measurement.flags(8) == ["--request-count", "32"]
    steady = options("--quick", "--stability-percentage", "25").encoder_measurement
    assert steady.flags(2) == [
        "--measurement-mode",
        "count_windows",
        "--measurement-interval",
        "5000",
        "--measurement-request-count",
        "6",
        "--stability-percentage",
        "25",
        "--max-trials",
        "10",
    ]
    full = options("--encoder-concurrency", "1,2")
    assert full.decoder_concurrency == (1, 2, 4, 8, 16) and full.encoder_concurrency == (1, 2)
    assert full.decoder_measurement.flags(4)[5] == "40" and full.baseline_requests == 20


def test_a_level_that_does_not_stabilize_is_measured_once_and_marked(server, workload, tiny_onnx, tmp_path):
    from sam_triton.perf.benchmark.report import model_table

    written = write_input_data(workload, ort_embeddings(OrtRunner(tiny_onnx[0]), workload.photos), tmp_path / "data")
    never_stable = Measurement(rounds=2, stability_percentage=0, max_trials=3)  # 3 windows would have to agree exactly
    sweep = run_sweep(
        ensure_perf_analyzer(),
        label=SINGLE_CLICKS,
        model=contract.DECODER_MODEL,
        url=server.config.grpc_url,
        input_data=written[SINGLE_CLICKS][1],
        concurrencies=[1],
        measurement=never_stable,
        out_dir=tmp_path / "pa",
        timeout_s=300,
    )
    (level,) = sweep.levels
    assert not level.stable and level.throughput > 0 and sweep.failures == {}
    assert "--stability-percentage 0" in sweep.commands[0] and "--request-count 2" in sweep.commands[1]
    assert sweep.csv_files == [tmp_path / "pa" / "sam_decoder-single_clicks-c1-unstable.csv"]
    assert "Failed to obtain stable measurement" in (tmp_path / "pa" / "sam_decoder-single_clicks-c1.log").read_text()
    table = model_table(sweep, [], "Triton gRPC")
    assert "| Triton gRPC | 1 † |" in table and "without the stability check (`--request-count`)" in table
