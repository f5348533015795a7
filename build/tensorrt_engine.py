"""TensorRT engines from the exported ONNX graphs (needs TensorRT and an NVIDIA GPU).

TensorRT is imported lazily: everything else in sam_triton.build works without it.
"""

from __future__ import annotations


class TensorRTUnavailableError(RuntimeError):
    """TensorRT's Python package is not importable here."""


INSTALL_HINT = (
    "TensorRT is not installed. Build TensorRT engines where TensorRT and an NVIDIA GPU are available:"
    " inside NVIDIA's Triton container (nvcr.io/nvidia/tritonserver:<yy.mm>-py3, which ships TensorRT;"
    " see the Dockerfile), or on a GPU machine after 'pip install tensorrt' from NVIDIA's index"
    " (pip install --extra-index-url https://pypi.nvidia.com tensorrt). The onnxruntime and python"
    " runtimes need no TensorRT."
)


def require_tensorrt():
    """Import and return the ``tensorrt`` module, or fail fast with where to get it."""
    try:
        import tensorrt
    except ImportError as exc:
        raise TensorRTUnavailableError(INSTALL_HINT) from exc
    return tensorrt
