"""The check that refuses a stale TensorRT plan, before Triton loads anything.

``ensure_plans_fresh`` compares each plan's metadata (``sam_triton.build.tensorrt.engine_metadata``)
with the repository's config.pbtxt (its max_batch_size, prompt/point limits and input dims give the
profile the plan must have), with the expected weights where they are known, and (where TensorRT
is importable) with this machine's TensorRT version and GPU. A mismatch raises ``StalePlanError``
saying how to rebuild.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional

from sam_triton.client import contract
from sam_triton.client.contract import Limits

from ..tensorrt.engine_metadata import METADATA_FILE, PLAN_FILE, EngineMetadata, RuntimeIdentity
from ..tensorrt.profiles import model_profiles, profiles_as_dict
from .model_config import parse_config, read_configs

log = logging.getLogger(__name__)

TENSORRT_PLATFORM = "tensorrt_plan"


class StalePlanError(RuntimeError):
    """A TensorRT plan does not match the repository, the weights, or this machine; the message says how to rebuild."""


def config_limits(config_text: str, *, opt_from: Limits) -> Limits:
    """The ``Limits`` a config.pbtxt serves (opt values, which configs do not hold, from ``opt_from``)."""
    config = parse_config(config_text)
    if not config.max_batch_size:
        raise ValueError("config.pbtxt has no max_batch_size")
    params = {key: value.string_value for key, value in config.parameters.items()}
    maxima = {
        "max_batch_size": config.max_batch_size,
        "max_prompts": int(params.get("max_prompts", opt_from.max_prompts)),
        "max_points": int(params.get("max_points", opt_from.max_points)),
    }
    opts = {f"opt_{k[4:]}": min(getattr(opt_from, f"opt_{k[4:]}"), v) for k, v in maxima.items()}
    return Limits(**maxima, **opts)


def tensorrt_models(repository: Path) -> List[str]:
    """The models of a repository whose config says ``platform: "tensorrt_plan"``."""
    return [model for model, config in read_configs(repository).items() if config.platform == TENSORRT_PLATFORM]


def _profile_problems(model: str, meta: EngineMetadata, config_text: str) -> List[str]:
    try:
        limits = config_limits(config_text, opt_from=Limits(**meta.limits))
    except (ValueError, TypeError) as exc:
        return [f"its config.pbtxt cannot be read against the plan ({exc})"]
    problems = []
    built = Limits(**meta.limits)
    for name in ("max_batch_size", "max_prompts", "max_points"):
        if model == contract.ENCODER_MODEL and name != "max_batch_size":
            continue
        if getattr(limits, name) != getattr(built, name):
            problems.append(f"config.pbtxt has {name} {getattr(limits, name)} but the plan was built for {getattr(built, name)}")
    expected = profiles_as_dict(model_profiles(model, limits))
    for name, shapes in expected.items():
        got = meta.profiles.get(name)
        if got is None:
            problems.append(f"the plan has no profile for input '{name}'")
        elif (got["min"], got["max"]) != (shapes["min"], shapes["max"]):
            problems.append(
                f"input '{name}': the plan's profile is {got['min']}..{got['max']}, the config needs {shapes['min']}..{shapes['max']}"
            )
    extra = sorted(set(meta.profiles) - set(expected))
    if extra:
        problems.append(f"the plan has inputs {extra} that the config does not")
    return problems


def plan_problems(
    repository: Path, model: str, *, expected_weights: Optional[str] = None, runtime: Optional[RuntimeIdentity] = None
) -> List[str]:
    """Why ``<repository>/<model>/1/model.plan`` cannot be served as it is (empty when it can)."""
    version_dir = Path(repository) / model / "1"
    problems = []
    if not (version_dir / PLAN_FILE).is_file():
        problems.append(f"there is no {PLAN_FILE}")
    try:
        meta = EngineMetadata.read(version_dir)
    except FileNotFoundError:
        return problems + [f"there is no {METADATA_FILE} beside the plan (it was not built by sam-triton)"]
    except (ValueError, TypeError) as exc:
        return problems + [f"{METADATA_FILE} is unreadable: {exc}"]
    if meta.model != model:
        problems.append(f"the plan was built for model '{meta.model}'")
    problems += _profile_problems(model, meta, (Path(repository) / model / "config.pbtxt").read_text())
    if expected_weights is not None and meta.weights != expected_weights:
        problems.append(f"the plan holds weights {meta.weights}, not {expected_weights}")
    if runtime is not None:
        if meta.tensorrt_version != runtime.tensorrt_version:
            problems.append(f"the plan was built by TensorRT {meta.tensorrt_version}; this machine has TensorRT {runtime.tensorrt_version}")
        if (meta.gpu_name, meta.compute_capability) != (runtime.gpu_name, runtime.compute_capability):
            problems.append(
                f"the plan was built for {meta.gpu_name} (compute capability {meta.compute_capability});"
                f" this machine has {runtime.gpu_name} ({runtime.compute_capability})"
            )
    return problems


def _rebuild_hint(repository: Path, models: List[str]) -> str:
    for model in models:
        try:
            command = EngineMetadata.read(Path(repository) / model / "1").rebuild_command
        except (OSError, ValueError, TypeError):
            continue
        if command:
            return f"Rebuild the plans on this machine with:\n  {command}"
    return (
        "Rebuild the plans on this machine with:\n  sam-triton build --runtime tensorrt --checkpoint CHECKPOINT"
        f" --repository {repository} (add the --max-batch-size/--max-prompts/--max-points the config should serve)"
    )


def ensure_plans_fresh(repository: Path, *, expected_weights: Optional[str] = None, runtime: Optional[RuntimeIdentity] = None) -> List[str]:
    """Raise ``StalePlanError`` if any TensorRT model of the repository cannot be served; returns those models.

    Repositories without TensorRT models (python, onnxruntime) pass untouched. The encoder and
    decoder plans must also hold the same weights.
    """
    repository = Path(repository)
    models = tensorrt_models(repository)
    report = {model: plan_problems(repository, model, expected_weights=expected_weights, runtime=runtime) for model in models}
    weights = set()
    for model in models:
        try:
            weights.add(EngineMetadata.read(repository / model / "1").weights)
        except (OSError, ValueError, TypeError):
            pass
    if len(weights) > 1:
        report.setdefault(models[0], []).append(f"the plans of {models} hold different weights: {sorted(weights)}")
    stale = {model: problems for model, problems in report.items() if problems}
    if stale:
        lines = [f"{model}/1/{PLAN_FILE} is stale:\n    " + "\n    ".join(problems) for model, problems in stale.items()]
        raise StalePlanError(f"refusing to serve {repository}: " + "\n  ".join(lines) + "\n" + _rebuild_hint(repository, models))
    if models:
        log.info("TensorRT plans of %s match their configs%s", ", ".join(models), "" if runtime is None else f" and {runtime}")
    return models
