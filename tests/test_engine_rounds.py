"""perf.engine_rounds: the interleaved ONNX Runtime / OpenVINO comparison behind the default runtime."""

from __future__ import annotations

import json

import pytest

from sam_triton.perf.studies.engine_rounds import interleaved, main, summarize


def test_summarize_takes_the_median_of_per_round_speedups():
    times = {"onnxruntime": [1.0, 2.0, 4.0], "openvino-fp32": [0.5, 2.0, 8.0]}
    figures = summarize(times)
    assert figures["openvino-fp32"]["speedup_over_onnxruntime_median"] == 1.0
    assert figures["openvino-fp32"]["speedup_over_onnxruntime_range"] == [0.5, 2.0]
    assert figures["openvino-fp32"]["median_ms"] == 2000.0 and figures["openvino-fp32"]["min_ms"] == 500.0


def test_interleaved_calls_every_engine_once_per_round_after_a_warm_up():
    order = []
    times = interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, rounds=2)
    assert order == ["a", "b", "a", "b", "a", "b"]
    assert [len(v) for v in times.values()] == [2, 2]


def test_tiny_preset_on_every_engine(tmp_path, cache_dir, tiny_onnx, capsys):
    pytest.importorskip("openvino")
    out = tmp_path / "rounds.json"
    assert main(["--model", "tiny", "--rounds", "1", "--cache-dir", str(cache_dir), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    for model in ("sam_encoder", "sam_decoder"):
        assert {"onnxruntime", "openvino-fp32"} <= set(result[model])
        assert all(figures["median_ms"] > 0 for figures in result[model].values())
    assert "| sam_encoder | openvino-fp32 |" in capsys.readouterr().out
