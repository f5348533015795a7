"""TensorRT optimization profiles, derived from the contract's tensors and ``Limits``.

The numbers that write config.pbtxt (``max_batch_size``, the decoder's prompt and point limits)
are the numbers here, so an engine and its config cannot disagree. Each input's profile is its
Triton shape with the batch dim in front; every variable dim (a contract axis: batch, prompts,
points) runs from 1 to its limit and is optimized for the ``opt_*`` value (the common single
click). Example, the decoder's ``point_coords`` with the default limits:
min (1, 1, 1, 2), opt (1, 1, 2, 2), max (8, 64, 16, 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Sequence, Tuple

from sam_triton.client import contract
from sam_triton.client.contract import Limits, TensorSpec

#: The inputs of each TensorRT model, as the contract defines them.
MODEL_INPUTS: Mapping[str, Tuple[TensorSpec, ...]] = {
    contract.ENCODER_MODEL: contract.ENCODER_INPUTS,
    contract.DECODER_MODEL: contract.DECODER_INPUTS,
}

Shape = Tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class InputProfile:
    """One input's (min, opt, max) shapes, batch dim first."""

    name: str
    min: Shape
    opt: Shape
    max: Shape

    def as_dict(self) -> Dict[str, List[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def axis_ranges(limits: Limits) -> Dict[str, Tuple[int, int, int]]:
    """Variable axis name -> (min, opt, max); the names are the contract's axis names plus 'batch'."""
    return {
        "batch": (1, limits.opt_batch_size, limits.max_batch_size),
        "prompts": (1, limits.opt_prompts, limits.max_prompts),
        "points": (1, limits.opt_points, limits.max_points),
    }


def input_profile(spec: TensorSpec, limits: Limits) -> InputProfile:
    ranges = axis_ranges(limits)
    names = iter(spec.axis_names)
    dims = [ranges["batch"]] + [ranges[next(names)] if d == -1 else (d, d, d) for d in spec.dims]
    low, opt, high = (tuple(r[i] for r in dims) for i in range(3))
    return InputProfile(name=spec.name, min=low, opt=opt, max=high)


def model_profiles(model: str, limits: Limits) -> Tuple[InputProfile, ...]:
    """The optimization profile of ``sam_encoder`` or ``sam_decoder``: one entry per input."""
    try:
        specs = MODEL_INPUTS[model]
    except KeyError:
        raise ValueError(f"model {model!r}: TensorRT engines exist for {sorted(MODEL_INPUTS)}") from None
    return tuple(input_profile(spec, limits) for spec in specs)


def profiles_as_dict(profiles: Sequence[InputProfile]) -> Dict[str, Dict[str, List[int]]]:
    return {p.name: p.as_dict() for p in profiles}


def _shapes(profiles: Sequence[InputProfile], which: str) -> str:
    return ",".join(f"{p.name}:" + "x".join(str(d) for d in getattr(p, which)) for p in profiles)


def trtexec_shape_flags(profiles: Sequence[InputProfile]) -> List[str]:
    """The same profile as trtexec flags: --minShapes, --optShapes, --maxShapes."""
    return [f"--{which}Shapes={_shapes(profiles, which)}" for which in ("min", "opt", "max")]
