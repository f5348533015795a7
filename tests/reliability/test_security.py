"""Security defaults, against real servers: `serve` binds loopback only, nobody loads or unloads
models, and the shared-memory and model-repository APIs refuse requests without the server's key
(which our client finds by itself on this host). The Dockerfile's non-root user is checked in
tests/test_docker.py."""

from __future__ import annotations

import ipaddress
import json
import re
import stat
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, Optional, Set

import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from sam_triton.cli import container as container_start
from sam_triton.cli.main import build_parser
from sam_triton.client import SamClient, SharedMemoryError, contract
from sam_triton.client.transport.server_key import ENV_VAR, GRPC_HEADER, HEADER, find_key, key_file
from sam_triton.perf.studies.wire_proxy import CountingProxy

from .probes import PROBE_CLICK, assert_same_probe
from .serve_process import Serve

RESTRICTED = "This protocol is restricted, expecting header 'triton-grpc-protocol-sam-triton-key'"
HTTP_RESTRICTED = "This API is restricted, expecting header 'sam-triton-key'"
NO_MODEL_CONTROL = "explicit model load / unload is not allowed if polling is enabled"


def _address(hex_address: str) -> str:
    """/proc/net/tcp[6]'s hex address (32-bit words in host byte order) -> '127.0.0.1', '::'..."""
    raw = b"".join(bytes.fromhex(hex_address[i : i + 8])[::-1] for i in range(0, len(hex_address), 8))
    address = ipaddress.ip_address(raw)
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


def listening_hosts(port: int) -> Set[str]:
    """The addresses a TCP port listens on, from /proc/net/tcp and tcp6."""
    hosts = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                hosts.add(_address(address))
    return hosts


def grpc_refusal(call) -> str:
    with pytest.raises(InferenceServerException) as error:
        call()
    return f"{error.value.status()} {error.value.message()}"


def http_status(url: str, method: str = "GET", headers: Optional[Dict[str, str]] = None) -> tuple:
    if headers is None:
        headers = {}
    request = urllib.request.Request(url, method=method, headers=headers, data=b"{}" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()).get("error", "")


def test_serve_is_secure_by_default(python_repository, cache_dir, tmp_path, images, reference):
    assert build_parser().parse_args(["serve", "--repository", "r"]).host == "127.0.0.1"
    with Serve(python_repository, cache_dir, tmp_path) as serve:
        for port in serve.ports.values():
            assert listening_hosts(port) == {"127.0.0.1"}, f"port {port} listens on {listening_hosts(port)}"
        path = key_file(serve.ports["grpc"])
        assert f"shared-memory, model-repository API key in {path}" in serve.output()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        key, wrong = {GRPC_HEADER: path.read_text()}, {GRPC_HEADER: "not-the-key"}
        with grpcclient.InferenceServerClient(serve.url) as raw:
            for headers in (None, wrong):  # restricted without the key, on gRPC ...
                for call in (
                    lambda headers=headers: raw.get_system_shared_memory_status(headers=headers),
                    lambda headers=headers: raw.register_system_shared_memory("intruder", "/intruder", 64, headers=headers),
                    lambda headers=headers: raw.get_cuda_shared_memory_status(headers=headers),
                    lambda headers=headers: raw.get_model_repository_index(headers=headers),
                    lambda headers=headers: raw.unload_model("sam_decoder", headers=headers),
                    lambda headers=headers: raw.load_model("sam_decoder", headers=headers),
                ):
                    assert grpc_refusal(call) == f"StatusCode.UNAVAILABLE {RESTRICTED}"
            assert raw.get_system_shared_memory_status(headers=key, as_json=True) == {}  # ... open with it
            index = raw.get_model_repository_index(headers=key).models
            every = (contract.ENCODER_MODEL, contract.DECODER_MODEL, contract.ENSEMBLE_MODEL, contract.SESSION_MODEL)
            assert sorted(m.name for m in index) == sorted(every)
            for call in (lambda: raw.unload_model("sam_decoder", headers=key), lambda: raw.load_model("sam", headers=key)):
                assert grpc_refusal(call) == f"StatusCode.UNAVAILABLE {NO_MODEL_CONTROL}"  # model control mode NONE
            assert raw.is_model_ready("sam_decoder")
        for path_, method in (
            ("/v2/systemsharedmemory/status", "GET"),
            ("/v2/repository/index", "POST"),
            ("/v2/repository/models/sam/unload", "POST"),
        ):  # ... and on HTTP
            assert http_status(serve.http + path_, method) == (403, HTTP_RESTRICTED)
        assert http_status(serve.http + "/v2/repository/models/sam/unload", "POST", {HEADER: key[GRPC_HEADER]})[1] == NO_MODEL_CONTROL
        with SamClient(serve.url) as client:  # our client finds the key: shared memory works out of the box
            assert client.transport == "shm"
            client.set_image(images["dog"])
            assert_same_probe(client.predict(**PROBE_CLICK), reference[0])
        assert serve.stop() == 0
    assert not path.exists(), "the key file outlived its server"


def test_unrestricted_api_opens_only_that_api(python_repository, cache_dir, tmp_path):
    with Serve(python_repository, cache_dir, tmp_path, "--unrestricted-api", "shared-memory") as serve:
        with grpcclient.InferenceServerClient(serve.url) as raw:
            assert raw.get_system_shared_memory_status(as_json=True) == {}
            assert grpc_refusal(raw.get_model_repository_index) == f"StatusCode.UNAVAILABLE {RESTRICTED}"
        assert re.search(r"model-repository API key in \S+grpc-\d+\.key", serve.output())
        assert serve.stop() == 0


def test_a_client_without_the_key(grpc_url, images, reference, monkeypatch):
    with pytest.raises(SharedMemoryError) as error:
        SamClient(grpc_url, transport="shm", api_key="not-the-key").open()
    assert (
        f"server: {RESTRICTED} -- the server restricts its shared-memory API to requests with its key and this client sent"
        " the key passed as api_key: pass the server's key as api_key= or in $SAM_TRITON_API_KEY"
    ) in str(error.value)
    with SamClient(grpc_url, api_key="not-the-key") as client:  # "auto" falls back to gRPC and answers
        assert client.transport == "grpc"
        client.set_image(images["dog"])
        assert_same_probe(client.predict(**PROBE_CLICK), reference[0])
    host, port = grpc_url.rsplit(":", 1)
    with CountingProxy(host, int(port)) as proxy:  # another port: no key file there, but $SAM_TRITON_API_KEY
        with pytest.raises(SharedMemoryError, match=r"this client sent no key \(there is no \S+grpc-\d+\.key\)"):
            SamClient(proxy.url, transport="shm").open()
        monkeypatch.setenv(ENV_VAR, find_key(grpc_url))
        with SamClient(proxy.url, transport="shm") as client:
            client.set_image(images["dog"])
            assert_same_probe(client.predict(**PROBE_CLICK), reference[0])


def test_the_container_restricts_the_same_apis(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    args = container_start.build_parser().parse_args(["--checkpoint", "sam.pth"])
    command = container_start.tritonserver_command(args, Path("/cache/repo"), ["--log-verbose=1"], key="k3y")
    assert command[1:] == [
        "--model-repository=/cache/repo",
        "--strict-readiness=true",
        "--model-control-mode=none",
        "--grpc-restricted-protocol=shared-memory,model-repository:sam-triton-key=k3y",
        "--http-restricted-api=shared-memory,model-repository:sam-triton-key=k3y",
        "--log-verbose=1",
    ]
    first, second = container_start.server_key(), container_start.server_key()
    assert first != second and re.fullmatch(r"[0-9a-f]{32}", first)  # unset: random, so nobody knows it
    monkeypatch.setenv(ENV_VAR, "shared-secret")
    assert container_start.server_key() == "shared-secret"
    monkeypatch.setenv(ENV_VAR, "a:b")
    with pytest.raises(ValueError, match=r"\$SAM_TRITON_API_KEY: got a str of 3 characters; expected the server's key"):
        container_start.server_key()
