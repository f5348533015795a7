"""What each TensorRT plan was built from, written beside it as ``<model>/1/model.plan.json``.

A plan is bound to the TensorRT version and GPU that built it, to the weights it holds and to the
shapes of its optimization profile; ``sam_triton.build.repository.stale_plans`` compares this
record with a repository's configs and this machine before Triton loads anything.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List

SCHEMA = 1
PLAN_FILE = "model.plan"
METADATA_FILE = "model.plan.json"


@dataclass(frozen=True, kw_only=True)
class RuntimeIdentity:
    """The TensorRT version and GPU an engine is bound to."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "9.0"


@dataclass(frozen=True, kw_only=True)
class EngineMetadata:
    """Everything a plan depends on. Profiles are input -> {min, opt, max} shapes, batch dim first."""

    model: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    fp32_groups: List[str]
    fp32_layers: int
    profiles: Dict[str, Dict[str, List[int]]]
    limits: Dict[str, int]
    weights: str
    onnx_sha256: str
    builder: Dict[str, object] = field(default_factory=dict)
    check: Dict[str, object] = field(default_factory=dict)
    rebuild_command: str = ""
    schema: int = SCHEMA

    def write(self, version_dir: Path) -> Path:
        path = Path(version_dir) / METADATA_FILE
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def read(cls, version_dir: Path) -> "EngineMetadata":
        data = json.loads((Path(version_dir) / METADATA_FILE).read_text())
        if data.get("schema") != SCHEMA:
            raise ValueError(f"metadata schema {data.get('schema')!r}, expected {SCHEMA}")
        return cls(**data)
