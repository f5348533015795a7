# sam-triton on NVIDIA's Triton container, serving TensorRT engines built for the GPU it runs on.
#
# nvcr.io/nvidia/tritonserver:25.01-py3 ships Triton 2.54.0 with TensorRT 10.8.0.43 (CUDA 12.8,
# Ubuntu 24.04, Python 3.12). build/tensorrt/data/tensorrt_onnx_operators.json is the ONNX parser's
# operator table of that TensorRT; tests check the two pins agree.
#
#   docker build -t sam-triton .
#   docker run --gpus all --rm -p 8000:8000 -p 8001:8001 -p 8002:8002 \
#     -v "$PWD/checkpoints:/checkpoints:ro" -v sam-trt-cache:/cache \
#     sam-triton --checkpoint /checkpoints/sam_vit_h_4b8939.pth
FROM nvcr.io/nvidia/tritonserver:25.01-py3

# TensorRT's Python API, pinned to the TensorRT the image's Triton backend links, so the plans
# the entrypoint builds are the plans Triton can load; cuda-python of the image's CUDA 12 for the
# GPU's identity and the post-build check. torch only exports ONNX here: its CPU build suffices.
ARG TENSORRT_VERSION=10.8.0.43
ARG CUDA_PYTHON_VERSION=12.8.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# The python backend's stubs (sam_session, the openvino runtime's models) import the venv's packages:
# the entrypoint (sam_triton.cli.container, tritonserver_environment) puts its site-packages on PYTHONPATH.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SAM_TRITON_CACHE=/cache \
    PATH=/opt/sam-triton/venv/bin:$PATH

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /opt/sam-triton/src

COPY pyproject.toml README.md constraints.txt ./
COPY client ./client
COPY build ./build
COPY perf ./perf
COPY cli ./cli
COPY docker/entrypoint.sh /opt/sam-triton/entrypoint.sh

# Ubuntu 24.04's Python is externally managed: the project lives in its own venv.
RUN python3 -m venv /opt/sam-triton/venv \
    && /opt/sam-triton/venv/bin/pip install --no-cache-dir --extra-index-url "${TORCH_INDEX_URL}" -c constraints.txt ".[build]" \
    && /opt/sam-triton/venv/bin/pip install --no-cache-dir --extra-index-url https://pypi.nvidia.com \
        "tensorrt-cu12==${TENSORRT_VERSION}" "cuda-python==${CUDA_PYTHON_VERSION}" \
    && /opt/sam-triton/venv/bin/python -c "import tensorrt; assert tensorrt.__version__ == '${TENSORRT_VERSION}', tensorrt.__version__" \
    && /opt/sam-triton/venv/bin/sam-triton --help > /dev/null

# A non-root user owns the engine cache (a named volume inherits this ownership).
RUN groupadd --gid 10001 sam \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin sam \
    && mkdir -p /cache \
    && chown sam:sam /cache

USER 10001:10001
VOLUME ["/cache"]
EXPOSE 8000 8001 8002
ENTRYPOINT ["/opt/nvidia/nvidia_entrypoint.sh", "/opt/sam-triton/entrypoint.sh"]
