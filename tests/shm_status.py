"""What a Triton server and /dev/shm say about system shared-memory regions (test helper)."""

from __future__ import annotations

import os
from typing import Set

import tritonclient.grpc as grpcclient

from sam_triton.client.transport.server_key import find_key, grpc_headers


def server_regions(url: str) -> Set[str]:
    """Names of the system shared-memory regions registered on the server (asked with its key)."""
    with grpcclient.InferenceServerClient(url) as raw:
        status = raw.get_system_shared_memory_status(as_json=True, client_timeout=30, headers=grpc_headers(find_key(url)))
        return set(status.get("regions", {}))


def shm_segments() -> Set[str]:
    """Names of the POSIX shared-memory objects in /dev/shm."""
    return set(os.listdir("/dev/shm"))
