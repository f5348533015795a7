"""Seconds per image of ``SamClient.generate`` (automatic masks) against a running server.

    python -m sam_triton.perf.studies.generate_time --url 127.0.0.1:8001 --image tests/images/dog.jpg

SAM's default arguments (points_per_side 32, points_per_batch 64, thresholds 0.88 / 0.95) unless
given; prints the wall time of each run, its median and the number of masks kept.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from sam_triton.client import MaskGeneratorOptions, SamClient
from sam_triton.client.images import load_image
from sam_triton.client.transport.core import TRANSPORTS


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sam_triton.perf.studies.generate_time", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="127.0.0.1:8001", help="The gRPC address of the server.")
    parser.add_argument("--image", type=Path, action="append", required=True, help="A photo (repeat for several).")
    parser.add_argument("--runs", type=int, default=1, help="Runs per photo.")
    parser.add_argument("--transport", choices=TRANSPORTS, default="auto", help="The client's transport.")
    for name, kind, default, text in MaskGeneratorOptions.flags():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default, help=text)
    args = parser.parse_args(argv)
    options = MaskGeneratorOptions(
        output_mode="uncompressed_rle", **{name: getattr(args, name) for name, *_ in MaskGeneratorOptions.flags()}
    )
    with SamClient(args.url, timeout_s=600, transport=args.transport) as client:
        for path in args.image:
            image = load_image(path)
            seconds = []
            for _ in range(args.runs):
                start = time.perf_counter()
                records = client.generate(image, options)
                seconds.append(time.perf_counter() - start)
            print(
                f"{path.name} {image.shape[1]}x{image.shape[0]} ({client.transport}): {len(records)} masks, "
                f"{statistics.median(seconds):.1f} s per image (runs: {', '.join(f'{s:.1f}' for s in seconds)})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
