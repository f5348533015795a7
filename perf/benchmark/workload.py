"""The benchmark's requests: real photos preprocessed to the contract, and four kinds of prompt.

Every runner (perf_analyzer through Triton, ONNX Runtime and PyTorch in-process) sends exactly
these requests. Prompt kinds are the export check's: one point; three points (two foreground, one
background); a box; a box and a point. Prompt ``k`` goes with photo ``k mod len(photos)``, so each
kind and each photo appears; the decoder's point count N differs between kinds (2, 4, 2, 3 rows
with SAM's padding point), and Triton batches only requests of equal shapes, as in real traffic.
``clicks`` holds one single-click request per photo (all N = 2): the interactive case, whose
requests Triton can batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from sam_triton.build.export.verify import check_prompts
from sam_triton.client.contract import DEFAULT_LIMITS
from sam_triton.client.images import load_image
from sam_triton.client.predictor.prompts import encode_prompt, stack_prompts
from sam_triton.client.predictor.transforms import prepare_image

#: scikit-image's photos, used when no --photo is given: a cat, a cup of coffee, an astronaut.
DEFAULT_PHOTOS = ("chelsea", "coffee", "astronaut")


@dataclass(frozen=True)
class Photo:
    """A photo and its sam_encoder inputs (no batch dim): ``image`` 1024x1024x3 uint8, ``input_size`` (2,) int32."""

    name: str
    image: np.ndarray  # HxWx3 uint8 RGB, original pixels
    encoder_inputs: Dict[str, np.ndarray]

    @property
    def original_size(self) -> Tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])


@dataclass(frozen=True)
class Case:
    """One decoder (or ensemble) request: a SamPredictor-style prompt on a photo.

    ``prompt`` is in original-image pixels; ``prompt_inputs`` are the contract's tensors without
    the batch dim: point_coords 1xNx2, point_labels 1xN, mask_input 1x1x256x256, has_mask_input 1.
    """

    name: str
    photo: Photo
    prompt: Dict[str, np.ndarray]
    prompt_inputs: Dict[str, np.ndarray]


@dataclass(frozen=True)
class Workload:
    photos: Tuple[Photo, ...]
    cases: Tuple[Case, ...]
    clicks: Tuple[Case, ...]

    def describe(self) -> str:
        photos = ", ".join(f"{p.name} ({p.image.shape[1]}x{p.image.shape[0]})" for p in self.photos)
        cases = ", ".join(f"{c.name} (N={c.prompt_inputs['point_coords'].shape[1]})" for c in self.cases)
        return (
            f"photos: {photos}; mixed-prompt requests (sam_decoder, sam): {cases}; "
            f"single-click requests (sam_decoder, single clicks): {len(self.clicks)}, N=2"
        )


def load_photos(paths: Optional[Sequence[Path]] = None) -> Tuple[Tuple[str, np.ndarray], ...]:
    """(name, HxWx3 uint8 RGB) for each path, or scikit-image's DEFAULT_PHOTOS when none is given."""
    if paths:
        return tuple((Path(p).stem, load_image(Path(p))) for p in paths)
    from skimage import data

    return tuple((f"skimage.{name}", np.ascontiguousarray(getattr(data, name)())) for name in DEFAULT_PHOTOS)


def make_photo(name: str, image: np.ndarray) -> Photo:
    padded, input_size = prepare_image(image)
    return Photo(name=name, image=image, encoder_inputs={"image": padded, "input_size": input_size})


def make_case(kind: str, photo: Photo) -> Case:
    prompt = check_prompts(*photo.original_size)[kind]
    encoded = encode_prompt(photo.original_size, limits=DEFAULT_LIMITS, **prompt)
    return Case(name=f"{kind}@{photo.name}", photo=photo, prompt=prompt, prompt_inputs=stack_prompts([encoded]))


def build_workload(photos: Sequence[Tuple[str, np.ndarray]]) -> Workload:
    """The photos preprocessed, one case per prompt kind (photos taken in turn), one click per photo."""
    if not photos:
        raise ValueError("the benchmark needs at least one photo")
    prepared = tuple(make_photo(name, image) for name, image in photos)
    kinds = list(check_prompts(1, 1))
    cases = tuple(make_case(kind, prepared[k % len(prepared)]) for k, kind in enumerate(kinds))
    clicks = tuple(make_case(kinds[0], photo) for photo in prepared)
    return Workload(photos=prepared, cases=cases, clicks=clicks)
