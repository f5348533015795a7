"""The session-affine gateway measured on a local cluster: key placement, sessions under a failure, throughput.

    python -m sam_triton.perf.studies.gateway --repository REPO --out docs/studies/gateway.json

Three parts, each on real tritonservers behind Envoy with the gateway file Kubernetes uses
(``sam_triton.build.server.cluster``); which replica served a call is read from Envoy's access log.

- ``keys``: 600 route keys pinged through 3 replicas, for Maglev (the file's policy) and ring_hash:
  share per replica, keys of live replicas that move when one replica dies, keys back on return.
- ``sessions``: ``--sessions`` sessions x ``--clicks`` clicks from ``--clients`` concurrent clients
  through 3 replicas, with one replica killed after half the clicks and started again before the last
  click: sessions per replica, share of clicks served by the replica that holds the session, re-opens
  (``client.reopens`` of the session transport), failed calls, sessions moved by the return.
- ``throughput``: encodes per second through the gateway with 1 and 3 replicas, ``--clients`` clients.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from sam_triton.build.server import gateway as gw
from sam_triton.build.server.cluster import Cluster, ClusterConfig
from sam_triton.client import SamClient
from sam_triton.client.contract import ROUTE_HEADER
from sam_triton.client.images import load_image

from .nginx_front import NginxFront

IMAGES = Path(__file__).resolve().parents[2] / "tests" / "images"


def start(repository: Path, replicas: int, gateway_config: Path, cache_dir: Optional[Path]) -> Cluster:
    config = ClusterConfig(repository=repository, replicas=replicas, port=0, gateway_config=gateway_config)
    return Cluster(config, run_dir=Path(tempfile.mkdtemp(prefix="gateway-study-")), cache_dir=cache_dir).start()


def placement(cluster: Cluster, since: int, path: str, expected: int) -> Dict[str, List[str]]:
    """route key -> the replica names of its ``path`` calls after access-log line ``since``, in order,
    once ``expected`` such calls are logged (Envoy flushes its access log about once a second)."""
    names = {url: name for name, url in cluster.replica_urls.items()}
    deadline = time.monotonic() + 20
    while True:
        routed: Dict[str, List[str]] = {}
        calls = [c for c in gw.read_access_log(cluster.run_dir / "access.log")[since:] if c.path.endswith(path) and c.upstream in names]
        for call in calls:
            routed.setdefault(call.route, []).append(names[call.upstream])
        if len(calls) >= expected or time.monotonic() > deadline:
            return routed
        time.sleep(0.2)


def ping(cluster: Cluster, keys: Sequence[str], front: Optional[NginxFront] = None) -> Dict[str, str]:
    """One ServerReady call per key through the gateway (or through ``front``); key -> the replica that answered."""
    import tritonclient.grpc as grpcclient

    since = len(gw.read_access_log(cluster.run_dir / "access.log")) if front is None else len(front.calls())
    with grpcclient.InferenceServerClient(front.url if front else cluster.url) as raw:
        for key in keys:
            raw.is_server_ready(headers={ROUTE_HEADER: key})
    if front is None:
        return {key: hosts[-1] for key, hosts in placement(cluster, since, "ServerReady", len(keys)).items()}
    names = {url: name for name, url in cluster.replica_urls.items()}
    return {call.route: names[call.upstream] for call in front.calls()[since:] if call.upstream in names}


def seconds_until_routed_back(cluster: Cluster, key: str, front: Optional[NginxFront], index: int, timeout_s: float = 30) -> float:
    """From the moment replica ``index`` is READY again: how long until the gateway sends ``key`` (one of
    its keys) to it. Envoy routes by its health checks (read from its admin), nginx by its fail_timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if front is None:
            if cluster.gateway.host_health().get(cluster.server_configs[index].grpc_url):
                return time.monotonic() - started
        elif ping(cluster, [key], front).get(key) == cluster.names[index]:
            return time.monotonic() - started
        time.sleep(0.05)
    return float("inf")


def measure_front(cluster: Cluster, keys: Sequence[str], front: Optional[NginxFront]) -> Dict[str, Any]:
    """Share per replica, keys moved when triton-1 dies, time and keys back when it returns."""
    before = ping(cluster, keys, front)
    victim = cluster.names[1]
    cluster.kill(1)
    cluster.gateway.wait_for_health({cluster.server_configs[1].grpc_url: False})
    during = ping(cluster, keys, front)
    cluster.restart(1, wait_for_gateway=False)  # READY on its old ports; the gateway has not been told
    back_s = seconds_until_routed_back(cluster, next(k for k in keys if before[k] == victim), front, 1)
    cluster.gateway.wait_for_health({cluster.server_configs[1].grpc_url: True})
    time.sleep(0 if front is None else 11)  # nginx: every key's fail_timeout has run out
    after = ping(cluster, keys, front)
    return {
        "share_pct": {name: round(100 * n / len(keys), 1) for name, n in sorted(Counter(before.values()).items())},
        "keys_of_the_dead_replica": sum(before[k] == victim for k in keys),
        "live_keys_moved_by_the_death": sum(before[k] != victim and during.get(k) != before[k] for k in keys),
        "keys_still_sent_to_the_dead_replica": sum(during.get(k) == victim for k in keys),
        "seconds_until_the_returned_replica_gets_its_keys": round(back_s, 2),
        "keys_back_on_their_replica_after_return": sum(after.get(k) == before[k] for k in keys),
        "keys": len(keys),
    }


def keys_part(repository: Path, cache_dir: Optional[Path], count: int = 600) -> Dict[str, Any]:
    """Where route keys land and which move: Envoy with Maglev (the gateway file) and ring_hash, and nginx."""
    import yaml

    keys = [f"key-{i}" for i in range(count)]
    results = {}
    for policy in ("MAGLEV", "RING_HASH"):
        config = gw.load(gw.DEFAULT_CONFIG)
        config["static_resources"]["clusters"][0]["lb_policy"] = policy
        path = Path(tempfile.mkdtemp()) / "envoy.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        cluster = start(repository, 3, path, cache_dir)
        try:
            results[f"envoy_{policy.lower()}"] = measure_front(cluster, keys, None)
            if policy == "MAGLEV":  # nginx in front of the same replicas
                front = NginxFront(list(cluster.replica_urls.values()), Path(tempfile.mkdtemp(prefix="nginx-"))).start()
                try:
                    results["nginx_hash_consistent"] = measure_front(cluster, keys, front)
                finally:
                    front.stop()
        finally:
            cluster.stop()
        print(json.dumps(results, indent=1), flush=True)
    return results


def sessions_part(
    repository: Path, cache_dir: Optional[Path], *, sessions: int, clicks: int, clients: int, transport: str
) -> Dict[str, Any]:
    """Sessions through 3 replicas with one killed half-way and brought back before the last click."""
    photos = [load_image(IMAGES / f"{name}.jpg") for name in ("truck", "dog", "groceries")]
    rng = np.random.default_rng(0)
    cluster = start(repository, 3, gw.DEFAULT_CONFIG, cache_dir)
    failures: List[str] = []
    lock = threading.Lock()
    try:
        keys = [f"study-{i:03d}" for i in range(sessions)]
        # the session transport sends its own route key; the grpc one is given the study's
        opened = [
            SamClient(cluster.url, transport=transport, headers=None if transport == "session" else {ROUTE_HEADER: key}) for key in keys
        ]
        since = len(gw.read_access_log(cluster.run_dir / "access.log"))

        def each(fn) -> None:
            def guarded(index: int) -> None:
                try:
                    fn(index)
                except Exception as exc:  # a failed user call is the study's finding, not its end
                    with lock:
                        failures.append(f"{keys[index]}: {type(exc).__name__}: {exc}"[:300])

            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(guarded, range(sessions)))

        def click(index: int) -> None:
            height, width = photos[index % 3].shape[:2]
            point = np.array([[rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height]])
            opened[index].predict(point_coords=point, point_labels=np.array([1]))

        each(lambda i: opened[i].open().set_image(photos[i % 3]))
        for _ in range(clicks // 2):
            each(click)
        first_half = placement(cluster, since, "ModelInfer", sessions * (1 + clicks // 2))
        victim = cluster.names[1]
        cluster.kill(1)
        cluster.gateway.wait_for_health({cluster.server_configs[1].grpc_url: False})
        for _ in range(clicks // 2, clicks - 1):
            each(click)
        reopens_during = sum(client.reopens for client in opened)
        cluster.restart(1)
        each(click)
        reopens_total = sum(client.reopens for client in opened)
        # every re-open adds two calls: the predict that missed and the open
        routed = placement(cluster, since, "ModelInfer", sessions * (1 + clicks) + 2 * reopens_total)
        for client in opened:
            client.close()
    finally:
        cluster.stop()
    # each route key is one session (the session transport mints one per image; the grpc one was given them)
    home = {route: calls[0] for route, calls in first_half.items()}
    on_home = sum(name == home[route] for route, calls in first_half.items() for name in calls)
    return {
        "transport": transport,
        "sessions": sessions,
        "clicks_per_session": clicks,
        "clients": clients,
        "sessions_per_replica": dict(sorted(Counter(home.values()).items())),
        "share_of_calls_before_the_kill_on_the_holding_replica_pct": round(100 * on_home / max(sum(map(len, first_half.values())), 1), 2),
        "sessions_on_the_killed_replica": sum(name == victim for name in home.values()),
        "reopens_while_it_was_down": reopens_during,
        "reopens_after_it_returned": reopens_total - reopens_during,
        "sessions_whose_last_click_went_to_the_returned_replica": sum(calls[-1] == victim for calls in routed.values()),
        "failed_calls": len(failures),
        "failures": failures[:5],
    }


def encode_for(url: str, key: str, photo: np.ndarray, seconds: float) -> int:
    """One user encoding ``photo`` again and again for ``seconds`` through the gateway; how many it did."""
    count, stop_at = 0, time.monotonic() + seconds
    with SamClient(url, transport="grpc", headers={ROUTE_HEADER: key}) as client:
        while time.monotonic() < stop_at:
            client.set_image(photo)
            count += 1
    return count


def throughput_part(repository: Path, cache_dir: Optional[Path], *, clients: int, seconds: float) -> Dict[str, float]:
    """Encodes per second through the gateway, 1 and 3 replicas, ``clients`` clients each on its own key."""
    photo = load_image(IMAGES / "truck.jpg")
    result = {}
    for replicas in (1, 3):
        cluster = start(repository, replicas, gw.DEFAULT_CONFIG, cache_dir)
        try:
            with ThreadPoolExecutor(clients) as pool:
                done = sum(pool.map(lambda i, url=cluster.url: encode_for(url, f"enc-{i}", photo, seconds), range(clients)))
        finally:
            cluster.stop()
        result[f"{replicas}_replicas_encodes_per_s"] = round(done / seconds, 2)
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sam_triton.perf.studies.gateway", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repository", type=Path, required=True, help="A repository the embedded tritonserver runs (e.g. the tiny preset's)."
    )
    parser.add_argument("--cache-dir", type=Path)
    parser.add_argument("--parts", default="keys,sessions,throughput", help="Comma-separated: keys, sessions, throughput.")
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--clicks", type=int, default=10)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--transport", default="session", help="The client transport of the sessions part (session, or grpc).")
    parser.add_argument("--seconds", type=float, default=30.0, help="Length of each throughput run.")
    parser.add_argument("--out", type=Path, help="Write the results as JSON here.")
    args = parser.parse_args(argv)
    parts = args.parts.split(",")
    report: Dict[str, Any] = {"command": "python -m sam_triton.perf.studies.gateway " + " ".join(sys.argv[1:] if argv is None else argv)}
    if "keys" in parts:
        report["keys"] = keys_part(args.repository, args.cache_dir)
        print(json.dumps(report["keys"], indent=1), flush=True)
    if "sessions" in parts:
        report["sessions"] = sessions_part(
            args.repository, args.cache_dir, sessions=args.sessions, clicks=args.clicks, clients=args.clients, transport=args.transport
        )
        print(json.dumps(report["sessions"], indent=1), flush=True)
    if "throughput" in parts:
        report["throughput"] = throughput_part(args.repository, args.cache_dir, clients=args.clients, seconds=args.seconds)
        print(json.dumps(report["throughput"], indent=1), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
