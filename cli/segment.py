"""`sam-triton segment`: one photo and its prompts in, mask PNGs, an overlay PNG and scores out
(or, with ``--everything``, every mask of the photo: see ``everything_command``)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from sam_triton.client.client import SamClient
from sam_triton.client.errors import InvalidInputError
from sam_triton.client.images import load_image
from sam_triton.client.outputs import segment_to_files
from sam_triton.client.transport.core import TRANSPORTS

from . import everything as everything_command

log = logging.getLogger(__name__)


def parse_point(text: str) -> Tuple[float, float, int]:
    """'X,Y' or 'X,Y,LABEL' (label 1 foreground, the default, or 0 background)."""
    parts = text.split(",")
    try:
        if len(parts) == 2:
            return float(parts[0]), float(parts[1]), 1
        if len(parts) == 3:
            return float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"--point {text!r}: expected X,Y or X,Y,LABEL in pixels of the image, LABEL 1 or 0")


def parse_box(text: str) -> Tuple[float, float, float, float]:
    """'X0,Y0,X1,Y1' in pixels of the image."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"--box {text!r}: expected X0,Y0,X1,Y1 in pixels of the image")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=Path, help="The photo to segment (any format PIL reads; converted to RGB).")
    parser.add_argument(
        "--point",
        type=parse_point,
        action="append",
        default=[],
        metavar="X,Y[,LABEL]",
        help="A click in image pixels; LABEL is 1 for foreground (the default) or 0 for background. Repeat for several points.",
    )
    parser.add_argument("--box", type=parse_box, metavar="X0,Y0,X1,Y1", help="A box prompt in image pixels.")
    parser.add_argument("--url", default="127.0.0.1:8001", help="The gRPC address of the Triton server (host:port).")
    parser.add_argument(
        "--out", type=Path, default=Path("out"), help="The directory to write mask_<i>.png, overlay.png and scores.json into."
    )
    parser.add_argument(
        "--single-mask",
        action="store_true",
        help="Ask for SAM's single-mask output instead of its three multimask candidates (better for several points or a box).",
    )
    parser.add_argument(
        "--ensemble", action="store_true", help="Send one request through the 'sam' ensemble instead of sam_encoder then sam_decoder."
    )
    parser.add_argument("--timeout-s", type=float, default=120.0, help="The time limit of each request, in seconds.")
    parser.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default="auto",
        help="Where the image embedding lives between requests: auto (shared memory for a server on this machine, else grpc), shm, cuda or grpc.",
    )
    everything_command.add_arguments(parser)


def prompts_from(points: List[Tuple[float, float, int]], box: Optional[Tuple[float, ...]]) -> dict:
    prompt: dict = {}
    if points:
        prompt["point_coords"] = np.array([p[:2] for p in points], dtype=np.float64)
        prompt["point_labels"] = np.array([p[2] for p in points], dtype=np.int64)
    if box is not None:
        prompt["box"] = np.array(box, dtype=np.float64)
    if not prompt:
        raise InvalidInputError("--point/--box", "no prompt given; expected at least one --point or a --box")
    return prompt


def run(args: argparse.Namespace) -> int:
    image = load_image(args.image)
    if args.everything:
        if args.point or args.box is not None:
            raise InvalidInputError("--everything", "takes no --point or --box: it prompts a grid of points itself")
        return everything_command.run(args, image)
    prompt = prompts_from(args.point, args.box)
    with SamClient(args.url, timeout_s=args.timeout_s, transport=args.transport) as client:
        summary = segment_to_files(client, image, prompt, args.out, multimask=not args.single_mask, ensemble=args.ensemble)
    for i, score in enumerate(summary["scores"]):
        marker = "  <- best" if i == summary["best"] else ""
        print(f"mask {i}: predicted IoU {score:.4f}, {summary['mask_pixels'][i]} pixels -> {summary['masks'][i]}{marker}")
    print(f"overlay: {summary['overlay']}")
    return 0
