"""Which of Triton's APIs answer only requests that carry the server's key, and the flags saying so.

By default ``sam-triton serve`` and the Docker image restrict two APIs:

- ``shared-memory``: registering a region makes the server map a /dev/shm object (or CUDA memory)
  named by the client, then read inputs from it and write outputs into it; a client that can reach
  the server but is not trusted could make it read or overwrite another process's shared memory;
- ``model-repository``: the repository index and load/unload (refused anyway under model control
  mode NONE, which we always use).

Triton checks the header ``sam-triton-key`` (HTTP) or ``triton-grpc-protocol-sam-triton-key`` (gRPC)
against the key given on its command line; see ``sam_triton.client.transport.server_key`` for where the key
comes from and how local clients find it. Note that tritonserver's command line, key included, is
readable by other local users through /proc unless /proc is mounted with ``hidepid``: the key keeps
out clients on the network, not other accounts on the server's host.
"""

from __future__ import annotations

import os
from typing import List, Sequence

from sam_triton.client.transport.server_key import ENV_VAR, HEADER, check_key, new_key

#: Triton's API names (the same for --grpc-restricted-protocol and --http-restricted-api).
RESTRICTABLE_APIS = ("shared-memory", "model-repository")
DEFAULT_RESTRICTED = RESTRICTABLE_APIS


def server_key() -> str:
    """The key for a server about to start: ``$SAM_TRITON_API_KEY``, else a new random key."""
    value = os.environ.get(ENV_VAR)
    return check_key(value, f"${ENV_VAR}") if value else new_key()


def restricted(unrestricted: Sequence[str] = ()) -> tuple:
    """The APIs to restrict when ``unrestricted`` are to be left open; refuses unknown names."""
    unknown = sorted(set(unrestricted) - set(RESTRICTABLE_APIS))
    if unknown:
        raise ValueError(f"unrestricted APIs {unknown}: expected names among {', '.join(RESTRICTABLE_APIS)}")
    return tuple(api for api in DEFAULT_RESTRICTED if api not in unrestricted)


def restriction_args(*, key: str, apis: Sequence[str]) -> List[str]:
    """tritonserver flags restricting ``apis`` on gRPC and HTTP to requests carrying ``key``."""
    if not apis:
        return []
    spec = f"{','.join(apis)}:{HEADER}={check_key(key, 'key')}"
    return [f"--grpc-restricted-protocol={spec}", f"--http-restricted-api={spec}"]
