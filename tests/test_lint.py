"""ruff (lint and format check) and mypy over every package and the tests, as CI runs them: they must be clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: where `make setup` puts PyPI's tensorrt-stubs (pyproject's [tool.mypy] mypy_path)
TYPING = ROOT / ".tools" / "typing"


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_ruff_finds_nothing():
    done = run(str(BIN / "ruff"), "check", "--no-cache", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_code_is_formatted():
    done = run(str(BIN / "ruff"), "format", "--check", "--no-cache", ".")
    assert done.returncode == 0, f"run `ruff format .`:\n{done.stdout}{done.stderr}"


def test_mypy_finds_nothing(tmp_path):
    """mypy over client, build, perf and cli (pyproject's [tool.mypy]), TensorRT's calls against its stubs."""
    if not (TYPING / "tensorrt").is_dir():
        pytest.skip(f"no tensorrt-stubs in {TYPING}: run `make setup` (it installs them there for mypy)")
    done = run(sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy-cache"))
    assert done.returncode == 0, f"mypy found problems:\n{done.stdout}{done.stderr}"
