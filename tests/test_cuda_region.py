"""transport="cuda" on a real GPU: a CudaRegion holds what is written, and its IPC handle opens in
another process and shows the same bytes, as tritonserver opens it (cudaIpcOpenMemHandle).

No tritonserver with a GPU runs where this project is developed, so the server side of the CUDA
transport is not exercised here; this is the client half. Skipped without a CUDA GPU.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here (transport='cuda' needs one)")

# What tritonserver does with a registered raw handle, in a process of its own.
OPEN_IN_ANOTHER_PROCESS = """
import base64, sys
import numpy as np
from cuda import cudart
raw, count = base64.b64decode(sys.argv[1]), int(sys.argv[2])
handle = cudart.cudaIpcMemHandle_t()
handle.reserved = raw
err, pointer = cudart.cudaIpcOpenMemHandle(handle, cudart.cudaIpcMemLazyEnablePeerAccess)
assert err == cudart.cudaError_t.cudaSuccess, err
host = np.empty(count, np.float32)
(err,) = cudart.cudaMemcpy(host.ctypes.data, pointer, host.nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost)
assert err == cudart.cudaError_t.cudaSuccess, err
cudart.cudaIpcCloseMemHandle(pointer)
print(float(host.sum()), float(host[1]), float(host[-1]))
"""


def test_cuda_region_round_trip_and_ipc_handle():
    from sam_triton.client.transport.regions import CudaRegion

    embedding = np.random.default_rng(0).normal(size=(1, 256, 64, 64)).astype(np.float32)
    region = CudaRegion(embedding.nbytes, device_id=0, prefix="test")
    try:
        region.write(embedding)
        np.testing.assert_array_equal(region.read("float32", embedding.shape), embedding)
        rpc = region.register_rpc(timeout_s=5.0)
        assert rpc.kwargs["byte_size"] == embedding.nbytes and rpc.kwargs["device_id"] == 0
        raw = rpc.kwargs["raw_handle"]
        raw = raw.decode() if isinstance(raw, bytes) else raw
        out = subprocess.run(
            [sys.executable, "-c", OPEN_IN_ANOTHER_PROCESS, raw, str(embedding.size)], capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        total, second, last = (float(v) for v in out.stdout.split())
        flat = embedding.reshape(-1)
        assert second == float(flat[1]) and last == float(flat[-1])
        assert total == pytest.approx(float(flat.sum(dtype=np.float64)), rel=1e-4, abs=1e-2)
    finally:
        region.destroy()
