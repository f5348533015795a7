"""The shaped link of perf's counting proxy: a delay per direction and a bandwidth cap, against a
local echo server (bounds from below only: a loaded machine may add time, never remove it)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from sam_triton.perf.studies.wire_proxy import CountingProxy


@pytest.fixture
def echo_port():
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(1 << 16):
                    conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def round_trip(url, payload):
    host, port = url.rsplit(":", 1)
    with socket.create_connection((host, int(port))) as conn:
        start = time.perf_counter()
        conn.sendall(payload)
        received = 0
        while received < len(payload):
            received += len(conn.recv(1 << 16))
        return time.perf_counter() - start


def test_delay_and_bandwidth_shape_the_link_and_bytes_are_counted(echo_port):
    with CountingProxy("127.0.0.1", echo_port, one_way_delay_s=0.05) as proxy:
        assert round_trip(proxy.url, b"x") >= 0.1  # one way there, one way back
        assert proxy.client_to_server == proxy.server_to_client == 1
    payload = b"y" * 1_250_000  # 10 Mbit: 0.1 s each way at 100 Mbit/s
    with CountingProxy("127.0.0.1", echo_port, bandwidth_bps=100e6) as proxy:
        assert round_trip(proxy.url, payload) >= 0.1
        assert proxy.client_to_server == len(payload)
    with pytest.raises(ValueError, match="bandwidth_bps"):
        CountingProxy("127.0.0.1", echo_port, bandwidth_bps=0)


def test_the_sessions_study_markdown_is_its_json():
    """docs/studies/sessions.md is what sessions_link writes from sessions.json (no hand edits drift)."""
    import json
    from pathlib import Path

    from sam_triton.perf.studies.sessions_link import markdown, parse_link

    studies = Path(__file__).resolve().parents[1] / "docs" / "studies"
    report = json.loads((studies / "sessions.json").read_text())
    assert (studies / "sessions.md").read_text() == markdown(report)
    assert parse_link("100@20") == (100.0, 20.0)
    memory = report["store_memory"]
    assert memory["stub_growth_over_cap"] <= 1.1 and memory["growth_after_first_fill_over_cap"] <= 0.1


def test_the_encode_load_study_markdown_is_its_json():
    import json
    from pathlib import Path

    from sam_triton.perf.studies.sessions_load import markdown

    studies = Path(__file__).resolve().parents[1] / "docs" / "studies"
    assert (studies / "sessions_load.md").read_text() == markdown(json.loads((studies / "sessions_load.json").read_text()))


def test_the_soak_markdown_is_its_json_and_nothing_failed():
    import json
    from pathlib import Path

    from sam_triton.perf.studies.sessions_soak import markdown

    studies = Path(__file__).resolve().parents[1] / "docs" / "studies"
    report = json.loads((studies / "sessions_soak.json").read_text())
    assert (studies / "sessions_soak.md").read_text() == markdown(report)
    assert report["failures"] == 0 and report["rss_max_after_first_third_mib"] <= 1.1 * report["rss_first_third_end_mib"]
