"""Many prompts for one image: validate them all, then split them into requests the decoder takes.

``predict_batch`` accepts P prompts as sequences (or stacked arrays) of SamPredictor-style
arguments. Requests hold prompts with the same number of points only, so no prompt is padded and
each answer equals what ``predict`` gives for that prompt alone; each request holds at most the
decoder's ``max_prompts``.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..contract import Limits
from ..errors import InvalidInputError
from .prompts import DecoderPrompt, encode_prompt

#: One argument of ``predict_batch``: P per-prompt arrays (an entry may be None), an array with P first, or None.
BatchPrompts = Optional[Union[np.ndarray, Sequence[Optional[np.ndarray]]]]


def _as_sequence(value: object, argument: str) -> Optional[list]:
    """None, a stacked array (first dim P) or a sequence of P per-prompt values -> a list or None."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            raise InvalidInputError(argument, "got a scalar array; expected one entry per prompt (a sequence or an array with P first)")
        return list(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    raise InvalidInputError(
        argument, f"got {type(value).__name__}; expected a sequence with one entry per prompt, or an array with P first"
    )


def encode_prompt_batch(
    original_size: Tuple[int, int],
    *,
    point_coords: BatchPrompts = None,
    point_labels: BatchPrompts = None,
    boxes: BatchPrompts = None,
    mask_inputs: BatchPrompts = None,
    limits: Limits,
) -> List[DecoderPrompt]:
    """P prompts in original-image pixels -> P decoder prompts; every prompt is checked first.

    point_coords: P arrays of Nx2 (x, y) (N may differ per prompt), or a PxNx2 array;
    point_labels: P arrays of N labels, or PxN; boxes: Px4 (x0, y0, x1, y1);
    mask_inputs: Px1x256x256 low-res logits. A prompt's entry may be None where others have one
    (a box-only prompt among clicks). Errors name the prompt, as ``point_coords[3]``.
    """
    given = {
        name: _as_sequence(value, name)
        for name, value in (("point_coords", point_coords), ("point_labels", point_labels), ("boxes", boxes), ("mask_inputs", mask_inputs))
    }
    present = {name: seq for name, seq in given.items() if seq is not None}
    if not present or (set(present) <= {"mask_inputs"}):
        raise InvalidInputError(
            "point_coords", "no prompts given; expected point_coords with point_labels, boxes, or both (one entry per prompt)"
        )
    counts = {name: len(seq) for name, seq in present.items()}
    first_name, count = next(iter(counts.items()))
    for name, n in counts.items():
        if n != count:
            raise InvalidInputError(name, f"has {n} entries but {first_name} has {count}; expected one entry per prompt in each")
    if count == 0:
        raise InvalidInputError(first_name, "is empty; expected at least one prompt")

    def entry(name: str, i: int) -> Optional[np.ndarray]:
        seq = given[name]
        return None if seq is None else seq[i]

    prompts = []
    for i in range(count):
        try:
            prompts.append(
                encode_prompt(
                    original_size,
                    point_coords=entry("point_coords", i),
                    point_labels=entry("point_labels", i),
                    box=entry("boxes", i),
                    mask_input=entry("mask_inputs", i),
                    limits=limits,
                )
            )
        except InvalidInputError as exc:
            argument = {"box": "boxes", "mask_input": "mask_inputs"}.get(exc.argument, exc.argument)
            raise InvalidInputError(f"{argument}[{i}]", exc.problem) from None
    return prompts


def plan_requests(prompts: Sequence[DecoderPrompt], max_prompts: int) -> List[List[int]]:
    """Indices of ``prompts`` per decoder request: equal point counts together, at most ``max_prompts`` each."""
    groups: Dict[int, List[int]] = {}
    for index, prompt in enumerate(prompts):
        groups.setdefault(prompt.coords.shape[0], []).append(index)
    return [indices[start : start + max_prompts] for indices in groups.values() for start in range(0, len(indices), max_prompts)]
