"""The GPU model repository: checked ONNX graphs -> TensorRT plans + metadata + configs + ensemble.

``sam-triton build --runtime tensorrt`` and the Docker entrypoint both come here. Each step checks
its output before the next: op coverage of both graphs against the parser's table, then each
engine build, then one real request through each plan against ONNX Runtime, then the plans'
metadata against the configs just written (the same check ``serve`` runs).
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import asdict, replace
from pathlib import Path
from typing import Dict, Optional, Sequence

from sam_triton.client import contract

from ..export.exporter import DECODER_FILE, ENCODER_FILE
from ..models.presets import sha256_of
from ..tensorrt.engine import EngineOptions, build_engine, runtime_identity, trtexec_command
from ..tensorrt.engine_metadata import METADATA_FILE, EngineMetadata
from ..tensorrt.onnx_coverage import check_exported, require_coverage
from ..tensorrt.profiles import model_profiles, profiles_as_dict
from .assemble import RepositoryOptions, write_configs
from .stale_plans import ensure_plans_fresh

log = logging.getLogger(__name__)

GRAPHS = {contract.ENCODER_MODEL: ENCODER_FILE, contract.DECODER_MODEL: DECODER_FILE}


def rebuild_command(argv: Sequence[str]) -> str:
    """The command line that rebuilds these plans, recorded in their metadata for the stale-plan message."""
    return "sam-triton " + " ".join(shlex.quote(a) for a in argv)


def build_tensorrt_repository(
    *,
    repository: Path,
    onnx_dir: Path,
    manifest: dict,
    repo_options: RepositoryOptions,
    engine_options: EngineOptions,
    check_image: Optional[Path] = None,
    command: str = "",
) -> Dict[str, EngineMetadata]:
    """Write the tensorrt repository at ``repository`` from the export in ``onnx_dir``; returns each plan's metadata."""
    from ..models.sample_images import sample_photo
    from .engine_check import check_engines

    if repo_options.runtime != "tensorrt":
        raise ValueError(f"build_tensorrt_repository writes the tensorrt runtime, not {repo_options.runtime}")
    repository, onnx_dir = Path(repository), Path(onnx_dir)
    require_coverage(check_exported(onnx_dir, GRAPHS))
    identity = runtime_identity()
    write_configs(repository, repo_options)
    limits = repo_options.limits
    metadata: Dict[str, EngineMetadata] = {}
    for model in GRAPHS:  # a plan without metadata is refused: so is one whose build or check below fails
        (repository / model / "1" / METADATA_FILE).unlink(missing_ok=True)
    for model, file in GRAPHS.items():
        version_dir = repository / model / "1"
        built = build_engine(onnx_dir / file, version_dir / "model.plan", model=model, limits=limits, options=engine_options)
        metadata[model] = EngineMetadata(
            model=model,
            tensorrt_version=identity.tensorrt_version,
            gpu_name=identity.gpu_name,
            compute_capability=identity.compute_capability,
            precision=engine_options.precision.precision,
            fp32_groups=list(engine_options.precision.groups_for(model)),
            fp32_layers=len(built.fp32_layers),
            profiles=profiles_as_dict(model_profiles(model, limits)),
            limits=asdict(limits),
            weights=manifest["weights"],
            onnx_sha256=sha256_of(onnx_dir / file),
            builder={
                "workspace_mib": engine_options.workspace_mib,
                "optimization_level": engine_options.optimization_level,
                "timing_cache": str(engine_options.timing_cache) if engine_options.timing_cache else None,
                "seconds": built.seconds,
                "trtexec": " ".join(
                    trtexec_command(
                        onnx_dir / file,
                        version_dir / "model.plan",
                        model=model,
                        limits=limits,
                        options=engine_options,
                        fp32_layers=built.fp32_layers,
                    )
                ),
            },
            rebuild_command=command,
        )
        log.info("built %s in %.0f s", version_dir / "model.plan", built.seconds)
    name, image = sample_photo(check_image)
    figures = check_engines(repository, onnx_dir, image, precision=engine_options.precision.precision)
    for model, meta in metadata.items():  # written once, checked
        metadata[model] = replace(meta, check={"image": name, **figures[model]})
        metadata[model].write(repository / model / "1")
    ensure_plans_fresh(repository, expected_weights=manifest["weights"], runtime=identity)
    return metadata
