"""Reaching a remote server: TLS against a real tritonserver serving gRPC with self-signed
certificates on loopback (one-way and mutual), clients that do not speak its TLS failing clearly,
request headers arriving in a model (Triton's --grpc-header-forward-pattern into a python-backend
model that echoes them) and on every RPC (a recording gRPC proxy), and the options' checks."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import grpc
import numpy as np
import pytest

from sam_triton.build.server.tritonserver import ServerConfig, TritonServer
from sam_triton.client import AsyncSamClient, InvalidInputError, KeepAliveOptions, SamClient, ServerUnavailableError
from sam_triton.client.transport.server_key import GRPC_HEADER, find_key

from .grpc_recorder import RecordingProxy
from .helpers import CLICK, answers, assert_same_answers
from .tls_certs import issue

HEADER_ECHO = Path(__file__).parent / "header_echo"
PING = {"ping": np.array([1], np.int32)}
CONNECT_TIMEOUT_S, SLACK_S = 2.0, 15.0


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    root = issue(directory, "root")
    return SimpleNamespace(
        root=root,
        server=issue(directory, "server", root=root),
        client=issue(directory, "client", root=root, client=True),
        other_root=issue(directory, "other-root"),
    )


def tls_serving(request, config, log_path, cache_dir):
    srv = TritonServer(config, log_path=log_path, cache_dir=cache_dir).start()
    failed_before = request.session.testsfailed
    yield srv
    srv.stop()
    if request.session.testsfailed > failed_before:
        print(f"\n--- tritonserver log ({log_path}) ---\n{srv.log_tail(20000)}")


@pytest.fixture(scope="module")
def tls_url(request, python_repository, tmp_path_factory, cache_dir, certs):
    """A TLS server of the tiny preset plus header_echo, forwarding x-sam-* headers to the models."""
    repository = tmp_path_factory.mktemp("tls_repo") / "model_repository"
    shutil.copytree(python_repository, repository)
    shutil.copytree(HEADER_ECHO, repository / "header_echo")
    config = ServerConfig.on_free_ports(
        repository,
        grpc_use_ssl=True,
        grpc_server_cert=certs.server.cert,
        grpc_server_key=certs.server.key,
        grpc_header_forward_pattern="x-sam-.*",
    )
    for srv in tls_serving(request, config, tmp_path_factory.mktemp("logs") / "tls.log", cache_dir):
        yield srv.config.grpc_url


@pytest.fixture(scope="module")
def mutual_tls_url(request, python_repository, tmp_path_factory, cache_dir, certs):
    """A server that also requires a client certificate signed by the test root."""
    config = ServerConfig.on_free_ports(
        python_repository,
        grpc_use_ssl_mutual=True,
        grpc_server_cert=certs.server.cert,
        grpc_server_key=certs.server.key,
        grpc_root_cert=certs.root.cert,
    )
    for srv in tls_serving(request, config, tmp_path_factory.mktemp("logs") / "mutual-tls.log", cache_dir):
        yield srv.config.grpc_url


@pytest.fixture(scope="module")
def plain_answers(grpc_url, images):
    with SamClient(grpc_url, transport="grpc") as plain:
        return answers(plain, images["dog"])


def test_a_tls_client_gets_the_answers_of_a_plaintext_one(tls_url, certs, images, plain_answers):
    with SamClient(tls_url, ssl=True, root_certificates=str(certs.root.cert)) as client:
        assert client.transport == "shm"  # loopback: the key file of the TLS server is read as for any other
        got = answers(client, images["dog"])
    assert_same_answers(got, plain_answers)

    creds = grpc.ssl_channel_credentials(root_certificates=certs.root.cert.read_bytes())

    async def main():
        async with AsyncSamClient(tls_url, creds=creds, transport="grpc") as client:
            await client.set_image(images["dog"])
            return await client.predict(**CLICK)

    assert_same_answers([asyncio.run(main())], plain_answers[:1])


def test_a_client_certificate_is_required_and_accepted(mutual_tls_url, certs, images, plain_answers):
    with SamClient(
        mutual_tls_url,
        ssl=True,
        root_certificates=certs.root.cert,
        private_key=certs.client.key,
        certificate_chain=certs.client.cert,
        transport="grpc",
    ) as client:
        client.set_image(images["dog"])
        assert_same_answers([client.predict(**CLICK)], plain_answers[:1])
    assert_fails_clearly(
        lambda: SamClient(mutual_tls_url, ssl=True, root_certificates=certs.root.cert, connect_timeout_s=CONNECT_TIMEOUT_S).open(),
        "private_key and certificate_chain",
    )


def assert_fails_clearly(opening, hint):
    start = time.monotonic()
    with pytest.raises(ServerUnavailableError) as error:
        opening()
    assert time.monotonic() - start < CONNECT_TIMEOUT_S + SLACK_S, "no timely error"
    assert f"not ready within connect_timeout_s={CONNECT_TIMEOUT_S:g}" in str(error.value) and hint in str(error.value)
    return str(error.value)


def test_clients_that_do_not_speak_the_servers_tls_fail_clearly(tls_url, certs):
    assert_fails_clearly(lambda: SamClient(tls_url, connect_timeout_s=CONNECT_TIMEOUT_S).open(), "pass ssl=True")
    message = assert_fails_clearly(
        lambda: SamClient(tls_url, ssl=True, root_certificates=certs.other_root.cert, connect_timeout_s=CONNECT_TIMEOUT_S).open(),
        "root_certificates",
    )
    assert "CERTIFICATE_VERIFY_FAILED" in message  # gRPC's own reason, quoted


def echoed(client, **call):
    return json.loads(client._infer("header_echo", PING, ("parameters",), **call)["parameters"][0])


def test_headers_reach_the_model(tls_url, certs):
    session = {"x-sam-session": "s-1", "authorization": "Bearer t0ken"}
    with SamClient(tls_url, ssl=True, root_certificates=certs.root.cert, headers=session) as client:
        # Triton forwards only the headers its pattern (x-sam-.*) matches
        assert echoed(client) == {"x-sam-session": "s-1"}
        assert echoed(client, headers={"x-sam-request": "r-7"}) == {"x-sam-session": "s-1", "x-sam-request": "r-7"}
        assert echoed(client, headers={"X-Sam-Session": "s-2"}) == {"x-sam-session": "s-2"}  # a call's own win


def test_every_rpc_carries_the_client_and_call_headers(grpc_url, images):
    key = find_key(grpc_url)
    with RecordingProxy(grpc_url) as proxy:
        with SamClient(proxy.url, transport="shm", api_key=key, headers={"x-sam-session": "s-1"}) as client:
            opened = len(proxy.calls)
            client.set_image(images["dog"], headers={"x-sam-request": "embed"})
            embedded = len(proxy.calls)
            client.predict(**CLICK, headers={"x-sam-request": "click"})
            clicked = len(proxy.calls)
        calls = list(proxy.calls)

        async def main():
            async with AsyncSamClient(proxy.url, transport="grpc", headers={"x-sam-session": "s-2"}) as aio:
                await aio.set_image(images["dog"])
                await aio.predict(**CLICK, headers={"x-sam-request": "click"})

        asyncio.run(main())
        async_calls = proxy.calls[len(calls) :]
    methods = {method for method, _ in calls}
    assert {"ServerReady", "ModelConfig", "SystemSharedMemoryRegister", "ModelInfer", "SystemSharedMemoryUnregister"} <= methods
    assert all(metadata.get("x-sam-session") == "s-1" for _, metadata in calls), calls
    assert all("x-sam-request" not in metadata for _, metadata in calls[:opened] + calls[clicked:])
    assert all(metadata["x-sam-request"] == "embed" for _, metadata in calls[opened:embedded])
    assert all(metadata["x-sam-request"] == "click" for _, metadata in calls[embedded:clicked])
    assert {method for method, _ in calls[embedded:clicked]} >= {"ModelInfer"}
    # the shared-memory calls carry the server's key beside the headers
    assert all(metadata.get(GRPC_HEADER) == key for method, metadata in calls if "SharedMemory" in method)
    assert {"ServerReady", "ModelInfer"} <= {method for method, _ in async_calls}
    assert all(metadata.get("x-sam-session") == "s-2" for _, metadata in async_calls), async_calls
    assert [metadata.get("x-sam-request") for method, metadata in async_calls if method == "ModelInfer"] == [None, "click"]


def test_keepalive_and_channel_args_reach_the_channel(grpc_url, images):
    keepalive = KeepAliveOptions(keepalive_time_ms=10_000, keepalive_timeout_ms=5_000, keepalive_permit_without_calls=True)
    with SamClient(
        grpc_url,
        keepalive_options=keepalive,
        channel_args=[("grpc.max_receive_message_length", 64 * 2**20), ("grpc.primary_user_agent", "sam-test")],
    ) as client:
        arguments = dict(client._core.channel.channel_arguments())
        client.set_image(images["dog"])
        client.predict(**CLICK)
    assert arguments["grpc.keepalive_time_ms"] == 10_000 and arguments["grpc.keepalive_timeout_ms"] == 5_000
    assert arguments["grpc.keepalive_permit_without_calls"] == 1 and arguments["grpc.http2.max_pings_without_data"] == 2
    assert arguments["grpc.max_receive_message_length"] == 64 * 2**20  # channel_args win over ours
    assert arguments["grpc.max_send_message_length"] == 512 * 2**20 and arguments["grpc.primary_user_agent"] == "sam-test"
    assert arguments["grpc.max_reconnect_backoff_ms"] == 2000  # a restarted server is reached in seconds


@pytest.mark.parametrize(
    "options, argument",
    [
        (dict(root_certificates="{root}"), "root_certificates"),  # without ssl=True: would be plaintext
        (dict(ssl=True, root_certificates="/nonexistent/root.pem"), "root_certificates"),
        (dict(ssl=True, private_key="{root}"), "certificate_chain"),
        (dict(creds="a certificate"), "creds"),
        (dict(keepalive_options={"keepalive_time_ms": 1}), "keepalive_options"),
        (dict(channel_args={"grpc.x": 1}), "channel_args"),
        (dict(headers={"x-token:": "a"}), "headers['x-token:']"),
        (dict(headers={"x-token": b"bytes"}), "headers['x-token']"),
        (dict(headers=["x-token", "a"]), "headers"),
    ],
)
def test_bad_remote_options_name_the_option(certs, options, argument):
    options = {k: (v.format(root=certs.root.cert) if isinstance(v, str) else v) for k, v in options.items()}
    for cls in (SamClient, AsyncSamClient):
        with pytest.raises(InvalidInputError) as error:
            cls("example.com:8001", **options)
        assert error.value.argument == argument


def test_bad_call_headers_are_refused_before_anything_is_sent(grpc_url, images):
    with SamClient(grpc_url, transport="grpc") as client:
        with pytest.raises(InvalidInputError, match=r"headers\['grpc-timeout'\]"):
            client.set_image(images["dog"], headers={"grpc-timeout": "1S"})
        assert not client.is_image_set


def test_server_tls_settings_are_checked_and_become_flags(tmp_path, certs):
    config = ServerConfig(
        repository=tmp_path,
        grpc_use_ssl_mutual=True,
        grpc_server_cert=certs.server.cert,
        grpc_server_key=certs.server.key,
        grpc_root_cert=certs.root.cert,
        grpc_header_forward_pattern="x-.*",
    )
    assert config.tls_args() == [
        "--grpc-use-ssl-mutual=true",
        f"--grpc-server-cert={certs.server.cert.resolve()}",
        f"--grpc-server-key={certs.server.key.resolve()}",
        f"--grpc-root-cert={certs.root.cert.resolve()}",
        "--grpc-header-forward-pattern=x-.*",
    ]
    with pytest.raises(ValueError, match="grpc_server_key"):
        ServerConfig(repository=tmp_path, grpc_use_ssl=True, grpc_server_cert=certs.server.cert)
    with pytest.raises(ValueError, match="grpc_root_cert"):
        ServerConfig(repository=tmp_path, grpc_use_ssl_mutual=True, grpc_server_cert=certs.server.cert, grpc_server_key=certs.server.key)
    with pytest.raises(ValueError, match="only with grpc_use_ssl"):
        ServerConfig(repository=tmp_path, grpc_server_cert=certs.server.cert)
    with pytest.raises(ValueError, match="is not a file"):
        ServerConfig(repository=tmp_path, grpc_use_ssl=True, grpc_server_cert=tmp_path / "missing.pem", grpc_server_key=certs.server.key)
