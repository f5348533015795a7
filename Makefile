# The two set-up commands of the README: `make demo` runs the main job, `make test` the test suite.
# Each creates .venv and installs what it needs; nothing outside the project folder is required.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= build,serve,perf,cluster,test

.PHONY: setup demo test perf-tools clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt .ci/tensorrt_stubs.py
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	$(BIN)/python .ci/tensorrt_stubs.py
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/sam-triton demo --out demo_out

test: setup
	$(BIN)/python -m pytest

# perf_analyzer for `sam-triton perf` (found, or fetched into .tools/; see DEVELOPERS.md)
perf-tools: setup
	$(BIN)/python -m sam_triton.perf.benchmark.install

clean:
	rm -rf $(VENV) .setuptools-build *.egg-info demo_out
