"""Checkpoint (or preset) -> checked ONNX graphs, cached by weights and exporter code.

An export of ViT-B takes a minute and its check another; ``prepare_onnx`` reuses a previous
export when the weights, the exporter's source code and the opset are the same.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from ..models.presets import DEFAULT_SEED, PRESETS, ModelSource, load_model, sha256_of
from .exporter import OPSET, export_onnx, read_manifest, write_manifest

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ModelChoice:
    """Which weights to export: a checkpoint file, or a seeded preset."""

    checkpoint: Optional[Path] = None
    model_type: Optional[str] = None
    seed: int = DEFAULT_SEED

    @classmethod
    def parse(cls, model: str) -> "ModelChoice":
        """A study script's model argument: a preset name (seeded random weights), else a checkpoint path."""
        return cls(model_type=model) if model in PRESETS else cls(checkpoint=Path(model))

    def load(self):
        """The PyTorch Sam of this choice (the checkpoint's weights, or the preset's seeded random ones)."""
        return load_model(checkpoint=self.checkpoint, model_type=self.model_type, seed=self.seed)[0]

    def weights_id(self) -> str:
        if self.checkpoint is not None:
            return f"sha256:{sha256_of(Path(self.checkpoint))}"
        if self.model_type is None:
            raise ValueError("either a checkpoint or a preset is required")
        return ModelSource(self.model_type, seed=self.seed).weights_id


def exporter_id() -> str:
    """A hash of the code that shapes the graphs: a change to it invalidates cached exports."""
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for name in ("onnx_modules.py", "exporter.py"):
        digest.update((here / name).read_bytes())
    return digest.hexdigest()[:16]


def _cache_name(weights_id: str) -> str:
    kind, _, value = weights_id.partition(":")
    return f"{kind}-{value.replace(':', '-')[:16]}"


def prepare_onnx(
    choice: ModelChoice,
    *,
    cache_dir: Path,
    onnx_dir: Optional[Path] = None,
    check_image: Optional[Path] = None,
    check: bool = True,
    force: bool = False,
) -> Tuple[Path, dict]:
    """Exported, checked graphs for ``choice`` in ``onnx_dir`` (default: a cache dir); returns (dir, manifest)."""
    weights_id = choice.weights_id()
    onnx_dir = Path(onnx_dir) if onnx_dir else Path(cache_dir) / "onnx" / _cache_name(weights_id)
    manifest = read_manifest(onnx_dir)
    fresh = (
        manifest is not None
        and manifest.get("weights") == weights_id
        and manifest.get("exporter_id") == exporter_id()
        and manifest.get("opset") == OPSET
        and (manifest.get("check") is not None or not check)
    )
    if manifest is not None and fresh and not force:
        log.info("reusing the ONNX export in %s (%s)", onnx_dir, manifest["source"])
        return onnx_dir, manifest

    sam, source = load_model(checkpoint=choice.checkpoint, model_type=choice.model_type, seed=choice.seed)
    log.info("exporting %s", source.description)
    manifest = export_onnx(sam, source, onnx_dir)
    manifest["exporter_id"] = exporter_id()
    if check:
        from ..models.sample_images import sample_photo
        from .verify import verify_onnx

        name, image = sample_photo(check_image)
        report = verify_onnx(sam, onnx_dir, image)
        manifest["check"] = {"image": name, **report.as_dict()}
    write_manifest(onnx_dir, manifest)
    return onnx_dir, manifest
