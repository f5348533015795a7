"""Shared-memory regions the server reads inputs from and writes outputs into.

Two kinds, one interface (a registry maps the transport name to the class):

- ``SystemRegion`` (``transport="shm"``): a POSIX shared-memory object in /dev/shm, for a server
  on the same host.
- ``CudaRegion`` (``transport="cuda"``): device memory exported by CUDA IPC, for a server with a
  GPU on the same host. Created with ``tritonclient.utils.cuda_shared_memory``, which needs
  cuda-python and a GPU; without them creating one raises ``TransportUnavailableError``.

A region only allocates and frees local memory; registering it with the server is an ``Rpc`` the
caller runs (``register_rpc``/``unregister_rpc``). Every name starts with ``sam_triton_`` and
carries the process id, so an operator can tell whose a leftover registration is.
"""

from __future__ import annotations

import itertools
import os
import secrets
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any, Dict, Optional, Tuple, Type

import numpy as np

from ..errors import TransportUnavailableError
from .ops import Rpc

NAME_PREFIX = "sam_triton_"
_counter = itertools.count()
_session = secrets.token_hex(4)


def unique_region_name(prefix: Optional[str] = None) -> str:
    """A name unique across processes and clients: sam_triton_<pid>_<random>_<n>, or ``prefix<n>``."""
    return f"{prefix or NAME_PREFIX + str(os.getpid()) + '_' + _session + '_'}{next(_counter)}"


class _Registrations:
    """The server-side calls that differ between region kinds only by ``kind`` (Triton's method
    names: ``*_system_shared_memory*`` / ``*_cuda_shared_memory*``) and ``label`` (for messages)."""

    kind = ""
    label = ""
    name = ""

    def unregister_rpc(self, timeout_s: float) -> Rpc:
        return self.unregister_named(self.name, timeout_s)

    @classmethod
    def unregister_named(cls, name: str, timeout_s: float) -> Rpc:
        return Rpc(
            f"unregister_{cls.kind}_shared_memory",
            dict(name=name, client_timeout=timeout_s),
            request=f"unregistering {cls.label} '{name}'",
            shared_memory=True,
        )

    @classmethod
    def status_rpc(cls, timeout_s: float) -> Rpc:
        """The server's registrations of this kind (idempotent, sent with the restricted API's key)."""
        return Rpc(
            f"get_{cls.kind}_shared_memory_status", dict(as_json=True, client_timeout=timeout_s), idempotent=True, shared_memory=True
        )


class SystemRegion(_Registrations):
    """A /dev/shm object of ``byte_size`` bytes, mapped here; the server maps it on registration.

    Made with the standard library's ``multiprocessing.shared_memory`` (tritonclient's own
    utilities need pkg_resources, which current setuptools no longer ships). Its resource tracker
    unlinks the object even if this process dies without ``close()``.
    """

    kind = "system"
    label = "system shared memory"

    def __init__(self, byte_size: int, *, device_id: int = 0, prefix: Optional[str] = None) -> None:
        self.name = unique_region_name(prefix)
        self.key = "/" + self.name
        self.byte_size = int(byte_size)
        try:
            self._shm: Optional[shared_memory.SharedMemory] = shared_memory.SharedMemory(name=self.name, create=True, size=self.byte_size)
        except OSError as exc:
            raise TransportUnavailableError(
                f"transport='shm': could not create a {self.byte_size}-byte region in /dev/shm ({exc}); use transport='grpc'"
            ) from exc

    def register_rpc(self, timeout_s: float) -> Rpc:
        return Rpc(
            "register_system_shared_memory",
            dict(name=self.name, key=self.key, byte_size=self.byte_size, client_timeout=timeout_s),
            request=f"registering system shared memory '{self.name}' ({self.byte_size} bytes at {self.key})",
            shared_memory=True,
        )

    def _view(self, dtype: Any, shape: Tuple[int, ...], offset: int) -> np.ndarray:
        if self._shm is None:
            raise ValueError(f"shared-memory region {self.name} was destroyed")
        return np.ndarray(shape, dtype=np.dtype(dtype), buffer=self._shm.buf, offset=offset)

    def read(self, dtype: Any, shape: Tuple[int, ...], offset: int = 0) -> np.ndarray:
        """A copy of the region's bytes as an array."""
        view = self._view(dtype, shape, offset)
        try:
            return np.array(view)
        finally:
            del view

    def write(self, array: np.ndarray, offset: int = 0) -> None:
        view = self._view(array.dtype, array.shape, offset)
        try:
            view[...] = array
        finally:
            del view

    def destroy(self) -> None:
        """Unmap and unlink the local object (idempotent)."""
        if self._shm is not None:
            shm, self._shm = self._shm, None
            shm.close()
            try:
                shm.unlink()
            except FileNotFoundError:
                pass


def _cuda_shared_memory() -> Any:
    try:
        import tritonclient.utils.cuda_shared_memory as cudashm
    except (ImportError, RuntimeError) as exc:
        raise TransportUnavailableError(
            "transport='cuda' needs tritonclient's CUDA shared-memory utilities, which need cuda-python with"
            " its legacy cuda.cudart module and pkg_resources (pip install 'sam-triton[cuda]', which pins"
            " cuda-python<13 and setuptools<81) and a GPU on"
            f" this host ({exc}); use transport='shm' for a server on this host or transport='grpc'"
        ) from exc
    return cudashm


class CudaRegion(_Registrations):
    """``byte_size`` bytes of device memory on GPU ``device_id``, shared with the server by CUDA IPC."""

    kind = "cuda"
    label = "CUDA shared memory"

    def __init__(self, byte_size: int, *, device_id: int = 0, prefix: Optional[str] = None) -> None:
        self._cudashm = _cuda_shared_memory()
        self.name = unique_region_name(prefix)
        self.byte_size = int(byte_size)
        self.device_id = int(device_id)
        try:
            self._handle: Any = self._cudashm.create_shared_memory_region(self.name, self.byte_size, self.device_id)
        except Exception as exc:  # CudaSharedMemoryException, or cuda-python's own on a machine without GPU
            raise TransportUnavailableError(
                f"transport='cuda': could not allocate {self.byte_size} bytes on GPU {self.device_id} ({exc});"
                " use transport='shm' or 'grpc'"
            ) from exc

    def register_rpc(self, timeout_s: float) -> Rpc:
        raw = self._cudashm.get_raw_handle(self._handle)
        return Rpc(
            "register_cuda_shared_memory",
            dict(name=self.name, raw_handle=raw, device_id=self.device_id, byte_size=self.byte_size, client_timeout=timeout_s),
            request=f"registering CUDA shared memory '{self.name}' ({self.byte_size} bytes on GPU {self.device_id})",
            shared_memory=True,
        )

    def read(self, dtype: Any, shape: Tuple[int, ...], offset: int = 0) -> np.ndarray:
        itemsize = np.dtype(dtype).itemsize
        flat = self._cudashm.get_contents_as_numpy(self._handle, np.dtype(dtype), [self.byte_size // itemsize])
        start = offset // itemsize
        return np.array(flat[start : start + int(np.prod(shape))]).reshape(shape)

    def write(self, array: np.ndarray, offset: int = 0) -> None:
        if offset:
            raise ValueError("CudaRegion.write supports offset 0 only")
        self._cudashm.set_shared_memory_region(self._handle, [np.ascontiguousarray(array)])

    def destroy(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            self._cudashm.destroy_shared_memory_region(handle)


#: transport name -> region class.
REGION_KINDS: Dict[str, Type] = {"shm": SystemRegion, "cuda": CudaRegion}


@dataclass(frozen=True)
class Placed:
    """A tensor of ``shape`` and ``dtype`` (numpy name) at ``offset`` bytes in ``region``."""

    region: Any
    shape: Tuple[int, ...]
    dtype: str
    offset: int = 0

    @property
    def byte_size(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize

    def read(self) -> np.ndarray:
        return self.region.read(self.dtype, self.shape, self.offset)
