"""The GPU, through NVIDIA's cuda-python (CUDA runtime bindings): its identity, and device buffers.

The TensorRT path needs the GPU's name and compute capability (engine metadata, cache keys) and
device memory for the post-build check. cuda-python's CUDA 12 runtime matches the TensorRT of the
NGC image and needs no framework, so the image can carry a CPU-only torch for the ONNX export.
Imported lazily, like TensorRT; every call's CUDA error becomes ``CudaError`` with its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np


class CudaError(RuntimeError):
    """A CUDA runtime call failed (no driver, no GPU, out of memory, ...)."""


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError as exc:
            raise CudaError("cuda-python is not installed: pip install 'cuda-python>=12,<13' (the Docker image has it)") from exc
    return cudart


def _check(result):
    """cuda-python returns (error, *values): raise on error, return the values."""
    cudart = _cudart()
    error, *values = result if isinstance(result, tuple) else (result,)
    if error != cudart.cudaError_t.cudaSuccess:
        raise CudaError(f"CUDA call failed: {cudart.cudaGetErrorName(error)[1].decode()}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def device_identity(device: int = 0) -> Tuple[str, str]:
    """(name, compute capability "major.minor") of a GPU; raises ``CudaError`` where there is none."""
    cudart = _cudart()
    try:
        props = _check(cudart.cudaGetDeviceProperties(device))
    except RuntimeError as exc:  # cuda-python raises RuntimeError when libcuda.so.1 cannot be loaded
        raise CudaError(f"no CUDA GPU is usable here ({exc})") from exc
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return name.rstrip("\x00"), f"{props.major}.{props.minor}"


@dataclass
class DeviceBuffer:
    """``nbytes`` of device memory at ``ptr`` holding an array of ``shape`` and ``dtype``."""

    ptr: int
    shape: Tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize

    @classmethod
    def empty(cls, shape: Sequence[int], dtype: "np.typing.DTypeLike") -> "DeviceBuffer":
        buffer = cls(ptr=0, shape=tuple(int(d) for d in shape), dtype=np.dtype(dtype))
        buffer.ptr = int(_check(_cudart().cudaMalloc(max(buffer.nbytes, 1))))
        return buffer

    @classmethod
    def from_array(cls, array: np.ndarray) -> "DeviceBuffer":
        array = np.ascontiguousarray(array)
        buffer = cls.empty(array.shape, array.dtype)
        cudart = _cudart()
        _check(cudart.cudaMemcpy(buffer.ptr, array.ctypes.data, buffer.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))
        return buffer

    def to_array(self) -> np.ndarray:
        out = np.empty(self.shape, self.dtype)
        cudart = _cudart()
        _check(cudart.cudaMemcpy(out.ctypes.data, self.ptr, self.nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost))
        return out

    def free(self) -> None:
        if self.ptr:
            _check(_cudart().cudaFree(self.ptr))
            self.ptr = 0


class Stream:
    """A CUDA stream, as a context manager that synchronizes and destroys it on exit."""

    def __enter__(self) -> "Stream":
        self.handle = _check(_cudart().cudaStreamCreate())
        return self

    def synchronize(self) -> None:
        _check(_cudart().cudaStreamSynchronize(self.handle))

    def __exit__(self, *exc_info: object) -> None:
        self.synchronize()
        _check(_cudart().cudaStreamDestroy(self.handle))
