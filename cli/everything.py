"""`sam-triton segment IMAGE --everything`: every mask of a photo (``generate``), as an overlay and JSON."""

from __future__ import annotations

import argparse

import numpy as np

from sam_triton.client.amg.generator import MaskGeneratorOptions
from sam_triton.client.client import SamClient
from sam_triton.client.outputs import everything_to_files


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("--everything", "SamAutomaticMaskGenerator's options (defaults as in SAM).")
    group.add_argument(
        "--everything",
        action="store_true",
        help="Segment everything: prompt a grid of points and write every mask kept (everything.png, masks.json) instead of one prompt's masks.",
    )
    for name, kind, default, text in MaskGeneratorOptions.flags():
        group.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default, help=text)


def options_from(args: argparse.Namespace) -> MaskGeneratorOptions:
    return MaskGeneratorOptions(output_mode="uncompressed_rle", **{name: getattr(args, name) for name, *_ in MaskGeneratorOptions.flags()})


def run(args: argparse.Namespace, image: np.ndarray) -> int:
    with SamClient(args.url, timeout_s=args.timeout_s, transport=args.transport) as client:
        summary = everything_to_files(client, image, options_from(args), args.out)
    print(f"{summary['masks']} masks -> {summary['json']}")
    print(f"overlay: {summary['overlay']}")
    return 0
