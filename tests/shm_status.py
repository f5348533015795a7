"""What a Triton server and /dev/shm say about system shared-memory regions (test helper)."""

from __future__ import annotations

import os
from typing import Set

import tritonclient.grpc as grpcclient


def server_regions(url: str) -> Set[str]:
    """Names of the system shared-memory regions registered on the server."""
    with grpcclient.InferenceServerClient(url) as raw:
        return set(raw.get_system_shared_memory_status(as_json=True, client_timeout=30).get("regions", {}))


def shm_segments() -> Set[str]:
    """Names of the POSIX shared-memory objects in /dev/shm."""
    return set(os.listdir("/dev/shm"))
