"""The main job on the embedded default: checkpoint -> ONNX -> CPU tritonserver -> client -> masks.

Weights: ``--checkpoint`` or ``$SAM_CHECKPOINT``; ``--preset`` for seeded random weights of that
architecture (tests); otherwise the official checkpoint of ``--model-type`` (Meta's ViT-B by
default, MobileSAM's for vit_t), downloaded into the cache (from ``DemoConfig.checkpoints``); where
it cannot be downloaded, seeded random weights of that type, with a loud warning that the masks
are then meaningless.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from sam_triton.client import SamClient
from sam_triton.client.outputs import segment_to_files

from .export.pipeline import ModelChoice, prepare_onnx
from .models.checkpoints import META, CheckpointSource, checkpoint_or_none
from .models.presets import DEFAULT_SEED
from .models.sample_images import sample_photo
from .repository.assemble import DEFAULT_RUNTIME, RepositoryOptions, assemble
from .repository.openvino_options import OpenVinoOptions
from .server.tritonserver import ServerConfig, TritonServer

log = logging.getLogger(__name__)

RANDOM_WEIGHTS_WARNING = """
************************************************************************************
*  No checkpoint: $SAM_CHECKPOINT is unset and the official {model_type} checkpoint
*  could not be downloaded. Falling back to SEEDED RANDOM {model_type} WEIGHTS: the
*  pipeline runs end to end, but THE MASKS ARE MEANINGLESS. Set SAM_CHECKPOINT=
*  /path/to/{file} (or pass --checkpoint) for real masks.
************************************************************************************"""


def random_weights_warning(config: "DemoConfig") -> str:
    return RANDOM_WEIGHTS_WARNING.format(model_type=config.model_type, file=config.checkpoints.file(config.model_type).name)


@dataclass(frozen=True, kw_only=True)
class DemoConfig:
    out_dir: Path
    repository: Path
    cache_dir: Path
    checkpoint: Optional[Path] = None
    preset: Optional[str] = None  # seeded random weights of this architecture instead of a checkpoint
    seed: int = DEFAULT_SEED
    image: Optional[Path] = None
    model_type: str = "vit_b"  # the official checkpoint downloaded when no checkpoint or preset is given (vit_t: MobileSAM's)
    checkpoints: CheckpointSource = META  # where that download comes from
    runtime: str = DEFAULT_RUNTIME  # an embedded (python-backend) runtime: openvino or python
    precision: str = "fp32"  # openvino: fp32 or bf16


def choose_weights(config: DemoConfig) -> ModelChoice:
    if config.preset is not None:
        log.warning("seeded random %s weights (--preset): the masks are meaningless", config.preset)
        return ModelChoice(model_type=config.preset, seed=config.seed)
    checkpoint = config.checkpoint or (Path(os.environ["SAM_CHECKPOINT"]) if os.environ.get("SAM_CHECKPOINT") else None)
    if checkpoint is None:
        checkpoint = checkpoint_or_none(config.model_type, config.cache_dir, source=config.checkpoints)
    if checkpoint is None:
        log.warning(random_weights_warning(config))
        return ModelChoice(model_type=config.model_type)
    return ModelChoice(checkpoint=checkpoint)


def demo_prompts(height: int, width: int) -> dict:
    """A point prompt and a box prompt. For the default photo (scikit-image's cat) they sit on the cat."""
    return {
        "point": {"point_coords": np.array([[width * 0.55, height * 0.45]]), "point_labels": np.array([1])},
        "box": {"box": np.array([width * 0.2, height * 0.05, width * 0.95, height * 0.95])},
    }


def first_mask_times(client: SamClient, prompt: dict, open_s: float, first_s: float) -> dict:
    """Time to first mask: opening the photo, then the first click's set_image + predict (as a user
    waits for it); the decoder's part is the same click predicted again on the image already set."""
    start = time.perf_counter()
    client.predict(multimask_output=True, **prompt)
    decode_s = time.perf_counter() - start
    total = open_s + first_s
    return {
        "seconds": round(total, 3),
        "open_s": round(open_s, 3),
        "decoder_s": round(decode_s, 3),
        "decoder_share": round(decode_s / total, 4),
    }


def run_demo(config: DemoConfig) -> dict:
    """Build, serve, segment with a point and a box; returns the per-prompt summaries."""
    choice = choose_weights(config)
    onnx_dir, manifest = prepare_onnx(choice, cache_dir=config.cache_dir, check_image=config.image)
    assemble(
        config.repository,
        RepositoryOptions(runtime=config.runtime, openvino=OpenVinoOptions(precision=config.precision)),
        onnx_dir=onnx_dir,
    )
    start = time.perf_counter()
    image_name, image = sample_photo(config.image)
    open_s = time.perf_counter() - start
    server_config = ServerConfig.on_free_ports(config.repository)
    summaries: dict = {}
    with TritonServer(server_config, cache_dir=config.cache_dir) as server, SamClient(server.config.grpc_url, timeout_s=300) as client:
        log.info("segmenting %s (%dx%d) with %s", image_name, image.shape[1], image.shape[0], manifest["source"])
        for name, prompt in demo_prompts(*image.shape[:2]).items():
            start = time.perf_counter()
            summaries[name] = segment_to_files(
                client, image, prompt, Path(config.out_dir) / name, multimask=(name == "point"), ensemble=(name == "box")
            )
            if name == "point":  # the first click: set_image + predict (and the mask files written)
                summaries["time_to_first_mask"] = first_mask_times(client, prompt, open_s, time.perf_counter() - start)
    (Path(config.out_dir) / "time_to_first_mask.json").write_text(json.dumps(summaries["time_to_first_mask"], indent=2) + "\n")
    if choice.checkpoint is None and config.preset is None:
        log.warning(random_weights_warning(config))
    return summaries
