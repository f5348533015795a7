"""Write the workload as perf_analyzer ``--input-data`` JSON files, one per model.

Format (perf_analyzer's "real input data"): ``{"data": [{input: {"content": {"b64": ...},
"shape": [...]}}, ...]}``, one entry per batch-1 request, shapes without the batch dim, little-endian
row-major bytes in base64. perf_analyzer sends the entries round-robin. Model Analyzer takes the
same files through ``perf_analyzer_flags: {input-data: FILE}``.

sam_decoder's ``image_embeddings`` are the photos' real embeddings, computed here with ONNX Runtime
on the same sam_encoder graph the server runs.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Dict, List, Mapping, Tuple

import numpy as np

from sam_triton.client.contract import DECODER_MODEL, ENCODER_MODEL, ENSEMBLE_MODEL, IMAGE_EMBEDDINGS

from .workload import Workload

log = logging.getLogger(__name__)


def tensor_entry(array: np.ndarray) -> dict:
    """One input of one request: its bytes in base64 and its shape (no batch dim)."""
    array = np.ascontiguousarray(array)
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return {"content": {"b64": base64.b64encode(little.tobytes()).decode("ascii")}, "shape": list(array.shape)}


def decode_entry(entry: dict, dtype: str) -> np.ndarray:
    """The inverse of ``tensor_entry`` (for checks)."""
    raw = base64.b64decode(entry["content"]["b64"])
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(entry["shape"])


#: The label of the decoder sweep over single clicks only (equal shapes, so Triton can batch them).
SINGLE_CLICKS = f"{DECODER_MODEL}, single clicks"


def data_sets(workload: Workload, embeddings: Mapping[str, np.ndarray]) -> Dict[str, Tuple[str, List[dict]]]:
    """Label -> (Triton model, the requests perf_analyzer sends: input name -> array without batch dim)."""

    def decoder(cases) -> List[dict]:
        return [{IMAGE_EMBEDDINGS.name: embeddings[case.photo.name], **case.prompt_inputs} for case in cases]

    return {
        ENCODER_MODEL: (ENCODER_MODEL, [dict(photo.encoder_inputs) for photo in workload.photos]),
        DECODER_MODEL: (DECODER_MODEL, decoder(workload.cases)),
        SINGLE_CLICKS: (DECODER_MODEL, decoder(workload.clicks)),
        ENSEMBLE_MODEL: (ENSEMBLE_MODEL, [{**case.photo.encoder_inputs, **case.prompt_inputs} for case in workload.cases]),
    }


def file_name(label: str) -> str:
    """'sam_decoder, single clicks' -> 'sam_decoder-single_clicks'."""
    return label.replace(", ", "-").replace(" ", "_")


def write_input_data(workload: Workload, embeddings: Mapping[str, np.ndarray], out_dir: Path) -> Dict[str, Tuple[str, Path]]:
    """Write one JSON file per data set into ``out_dir``; returns label -> (Triton model, path).

    ``embeddings`` maps each photo's name to its 256x64x64 float32 embedding.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for label, (model, requests) in data_sets(workload, embeddings).items():
        path = out_dir / f"{file_name(label)}.json"
        data = [{name: tensor_entry(array) for name, array in request.items()} for request in requests]
        path.write_text(json.dumps({"data": data}))
        written[label] = (model, path)
        log.info("wrote %d requests for %s to %s (%.1f MB)", len(data), label, path, path.stat().st_size / 1e6)
    return written
