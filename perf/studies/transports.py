"""Bytes on the wire and latency per click of each transport, measured side by side.

    python -m sam_triton.perf.studies.transports --url 127.0.0.1:8001 --image tests/images/dog.jpg

For each transport (grpc, shm, and cuda where it works) one client sets the image and clicks
``--clicks`` points; bytes are counted by a loopback proxy between client and server (both
directions, gRPC framing included), latency is timed without the proxy, in interleaved rounds so
that a noisy machine treats every transport alike. A click is ``predict(point, multimask)``: the
decoder request and the client's upsampling of three masks to the photo's size.

This measures the client library; perf_analyzer (sam_triton.perf's other drivers) measures the
server.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from sam_triton.client import SamClient, TransportUnavailableError
from sam_triton.client.images import load_image
from sam_triton.client.transport.server_key import find_key

from .wire_proxy import CountingProxy


def click_points(height: int, width: int, count: int) -> List[np.ndarray]:
    """``count`` clicks spread over the image, (x, y) pixels, each as a 1x2 array."""
    rng = np.random.default_rng(0)
    return [np.array([[rng.uniform(0.05, 0.95) * width, rng.uniform(0.05, 0.95) * height]]) for _ in range(count)]


def wire_bytes(url: str, transport: str, image: np.ndarray, clicks: Sequence[np.ndarray]) -> Dict[str, float]:
    host, port = url.rsplit(":", 1)
    # the proxy listens on a port of its own: the server's key file is found by the server's url
    with CountingProxy(host, int(port)) as proxy, SamClient(proxy.url, transport=transport, api_key=find_key(url)) as client:
        proxy.reset()
        client.set_image(image)
        set_image = (proxy.client_to_server, proxy.server_to_client)
        client.predict(point_coords=clicks[0], point_labels=np.array([1]))  # first click may register regions
        proxy.reset()
        for point in clicks:
            client.predict(point_coords=point, point_labels=np.array([1]))
        return {
            "set_image_bytes_up": set_image[0],
            "set_image_bytes_down": set_image[1],
            "click_bytes_up": proxy.client_to_server / len(clicks),
            "click_bytes_down": proxy.server_to_client / len(clicks),
        }


def latencies(
    url: str, transports: Sequence[str], image: np.ndarray, clicks: Sequence[np.ndarray], rounds: int
) -> Dict[str, Dict[str, List[float]]]:
    clients = {t: SamClient(url, transport=t).open() for t in transports}
    times: Dict[str, Dict[str, List[float]]] = {t: {"click_s": [], "set_image_s": []} for t in transports}
    try:
        for client in clients.values():
            client.set_image(image)
            client.predict(point_coords=clicks[0], point_labels=np.array([1]))
        for _ in range(rounds):
            for transport, client in clients.items():
                start = time.perf_counter()
                client.set_image(image)
                times[transport]["set_image_s"].append(time.perf_counter() - start)
                for point in clicks:
                    start = time.perf_counter()
                    client.predict(point_coords=point, point_labels=np.array([1]))
                    times[transport]["click_s"].append(time.perf_counter() - start)
    finally:
        for client in clients.values():
            client.close()
    return times


def usable(url: str, transport: str) -> Optional[str]:
    """None if ``transport`` works against ``url``, else why not."""
    try:
        with SamClient(url, transport=transport):
            return None
    except TransportUnavailableError as exc:
        return str(exc)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sam_triton.perf.studies.transports", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="127.0.0.1:8001", help="The gRPC address of a server on this machine.")
    parser.add_argument("--image", type=Path, required=True, help="The photo to click on.")
    parser.add_argument("--clicks", type=int, default=20, help="Clicks per transport and round.")
    parser.add_argument("--rounds", type=int, default=3, help="Interleaved timing rounds.")
    parser.add_argument("--transports", default="grpc,shm,cuda", help="Comma-separated transports to measure.")
    parser.add_argument("--json", type=Path, help="Also write the figures as JSON here.")
    args = parser.parse_args(argv)
    image = load_image(args.image)
    clicks = click_points(image.shape[0], image.shape[1], args.clicks)
    transports = []
    for transport in args.transports.split(","):
        reason = usable(args.url, transport)
        if reason:
            print(f"{transport}: skipped: {reason}")
        else:
            transports.append(transport)
    timing = latencies(args.url, transports, image, clicks, args.rounds)
    report = {}
    for transport in transports:
        figures = wire_bytes(args.url, transport, image, clicks)
        clicks_s = timing[transport]["click_s"]
        figures.update(
            click_ms_median=1000 * statistics.median(clicks_s),
            click_ms_p90=1000 * float(np.percentile(clicks_s, 90)),
            set_image_ms_median=1000 * statistics.median(timing[transport]["set_image_s"]),
        )
        report[transport] = figures
    print(
        f"{'transport':<10}{'click up B':>12}{'click down B':>14}{'click ms p50':>14}{'click ms p90':>14}"
        f"{'set_image up B':>16}{'set_image down B':>18}{'set_image ms':>14}"
    )
    for transport, f in report.items():
        print(
            f"{transport:<10}{f['click_bytes_up']:>12.0f}{f['click_bytes_down']:>14.0f}{f['click_ms_median']:>14.1f}"
            f"{f['click_ms_p90']:>14.1f}{f['set_image_bytes_up']:>16}{f['set_image_bytes_down']:>18}{f['set_image_ms_median']:>14.1f}"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
