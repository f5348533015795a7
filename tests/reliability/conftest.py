"""Fixtures of the reliability suite; its helpers are in probes.py (and tests/helpers.py)."""

from __future__ import annotations

import pytest

from .probes import probe, stub_pids


@pytest.fixture(scope="session")
def reference(server, images):
    """(probe answer, stub pids) of the session server, taken before any reliability test disturbs it."""
    return probe(server.config.grpc_url, images["dog"]), stub_pids(server)
