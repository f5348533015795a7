"""`sam-triton`: one parser over the commands export, build, serve, cluster, segment, demo, perf, soak.

``main(argv)`` is separate from parsing so tests can call it; configuration flows from the flags
into one options object per command, never from globals. Each command's module declares its
flags (``add_arguments``) and runs them (``run``); flags several commands share live in
``cli.arguments``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Dict, Optional, Sequence, Tuple

from sam_triton.client import SamTritonError

from . import arguments, build, cluster, demo, perf, segment, serve, soak

log = logging.getLogger("sam_triton")

Command = Tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str, str]

COMMANDS: Dict[str, Command] = {
    "export": (
        build.add_export_arguments,
        build.run_export,
        "Export SAM to sam_encoder.onnx and sam_decoder.onnx, checked against SamPredictor.",
        "Export a SAM checkpoint (or preset) to ONNX and check both graphs with ONNX Runtime against Meta's SamPredictor on a real photo; fails with the figures if they disagree.",
    ),
    "build": (
        build.add_build_arguments,
        build.run_build,
        "Export SAM and write a Triton model repository for a runtime.",
        "Export SAM (reusing a cached export of the same weights) and write the model repository: sam_encoder, sam_decoder and the sam ensemble.",
    ),
    "serve": (
        serve.add_arguments,
        serve.run,
        "Serve a model repository with tritonserver until Ctrl-C or SIGTERM.",
        "Start tritonserver (the embedded one from nvidia-pytriton unless --tritonserver is given), wait until every model is READY, print the gRPC address, and shut down cleanly on Ctrl-C or SIGTERM.",
    ),
    "cluster": (
        cluster.add_arguments,
        cluster.run,
        "Serve a repository from N tritonserver replicas behind a session-affine gateway (Envoy), on this machine.",
        "Start N embedded tritonservers of one repository on free loopback ports and Envoy in front with the gateway configuration Kubernetes uses (sessions hashed on the 'sam-route' header, health checks, retries); Ctrl-C or SIGTERM drains every replica and stops them all.",
    ),
    "segment": (
        segment.add_arguments,
        segment.run,
        "Segment a photo with point and box prompts through a running server.",
        "Send a photo and its prompts to a running server and write the mask PNGs, an overlay PNG and the scores.",
    ),
    "demo": (
        demo.add_arguments,
        demo.run,
        "The whole flow on the embedded CPU server: build, serve, segment a real photo.",
        "Build the embedded runtime's repository from $SAM_CHECKPOINT (or Meta's ViT-B, downloaded; or seeded random ViT-B weights where there is no network), start the embedded tritonserver, segment a photo with a point and a box, write masks and overlays, and stop.",
    ),
    "perf": (
        perf.add_arguments,
        perf.run,
        "Benchmark sam_encoder, sam_decoder and sam with perf_analyzer, against in-process baselines.",
        "Serve the repository (or use --url), run Triton's perf_analyzer over a concurrency sweep of each model with real photos and prompts, time ONNX Runtime and PyTorch in-process on the same model and requests, and write a report with tables, ratios and plots.",
    ),
    "soak": (
        soak.add_arguments,
        soak.run,
        "Load sam_decoder and sam with perf_analyzer for minutes: no failed request, flat memory, identical probe.",
        "Serve the repository on loopback, keep sam_decoder and the sam ensemble busy with perf_analyzer at a fixed concurrency, and check that no request fails, that the server's RSS (tritonserver and its python stubs) stays within a tolerance after the warm-up, and that a probe request's outputs are identical before and after.",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sam-triton", description="Segment Anything on Triton Inference Server.")
    parser.add_argument("-v", "--verbose", action="store_true", help="Log debug messages.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add_arguments, _run, summary, description) in COMMANDS.items():
        add_arguments(commands.add_parser(name, help=summary, description=description))
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # the exact command, for reports
    if getattr(args, "repository", "") is None:  # build, serve, demo, perf, soak: one default for all
        args.repository = arguments.repository(args)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command][1](args)
    except (SamTritonError, ValueError, FileNotFoundError, RuntimeError) as exc:
        # Errors we raise carry their own explanation; a traceback would only hide it.
        print(f"sam-triton {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
