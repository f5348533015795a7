#!/usr/bin/env bash
# The sam-triton image's entrypoint: build (or reuse) TensorRT engines for this GPU in the mounted
# cache, then become tritonserver. Arguments are sam_triton.cli.container's; those after
# '--' go to tritonserver.
set -euo pipefail
exec /opt/sam-triton/venv/bin/python -m sam_triton.cli.container "$@"
