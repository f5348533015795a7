"""INT8 image encoder for OpenVINO: NNCF post-training quantization of the exported encoder.

``--precision int8`` (runtime ``openvino``) serves this in place of the FP32 encoder; the decoder
is unchanged (ONNX Runtime FP32). NNCF quantizes the OpenVINO model read from ``sam_encoder.onnx``
(its ONNX backend does not run with this project's onnx/numpy), with ``ModelType.TRANSFORMER``
(SmoothQuant, softmax and LayerNorm kept in floating point) and an ignored scope from ``SCOPES``,
calibrated on scikit-image's photos (they ship with the build extra; the test photos stay for
measuring). The result, ``sam_encoder_int8.xml``/``.bin``, is cached beside the export, keyed by the
graph's weights, the settings, the photos and NNCF's version. The fidelity of each scope, on
random weights, is in docs/studies/cpu_encoders.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

from sam_triton.client import contract
from sam_triton.client.predictor.transforms import prepare_image

from .exporter import ENCODER_FILE, read_manifest

log = logging.getLogger(__name__)

INT8_XML = "sam_encoder_int8.xml"
INT8_BIN = "sam_encoder_int8.bin"
#: scikit-image photos the quantizer calibrates on (colour, 300 to 512 px): cat, astronaut, coffee, rocket, cells
CALIBRATION_PHOTOS = ("chelsea", "astronaut", "coffee", "rocket", "immunohistochemistry")
#: Named ignored scopes (layers kept in floating point), as regular expressions over OpenVINO node names.
#: ``stem_neck``: the encoder's first and last convolutions (TinyViT's patch_embed, ViT's
#: patch_embed; both necks), where quantization error enters and leaves the embedding.
SCOPES: Mapping[str, Tuple[str, ...]] = {
    "none": (),
    "stem_neck": (r".*patch_embed.*", r".*neck.*"),
}
#: chosen by measured fidelity (docs/studies/cpu_encoders.md, random weights)
DEFAULT_SCOPE = "stem_neck"


def calibration_feeds(names: Sequence[str] = CALIBRATION_PHOTOS) -> List[Dict[str, np.ndarray]]:
    """Encoder inputs (batch 1) of the calibration photos, prepared as the client prepares them."""
    from skimage import data

    feeds = []
    for name in names:
        photo = np.asarray(getattr(data, name)())
        if photo.ndim == 2:
            photo = np.stack([photo] * 3, axis=-1)
        padded, input_size = prepare_image(np.ascontiguousarray(photo[..., :3]))
        feeds.append({contract.IMAGE.name: padded[None], contract.INPUT_SIZE.name: input_size[None]})
    return feeds


def _key(onnx_dir: Path, scope: str) -> str:
    import nncf

    manifest = read_manifest(onnx_dir) or {}
    what = [manifest.get("weights"), manifest.get("exporter_id"), scope, SCOPES[scope], CALIBRATION_PHOTOS, nncf.__version__]
    return hashlib.sha256(json.dumps(what, default=str).encode()).hexdigest()[:16]


def quantized_encoder(onnx_dir: Path, *, scope: str = DEFAULT_SCOPE) -> Path:
    """``onnx_dir/int8-<key>/sam_encoder_int8.xml``: the INT8 encoder, quantized now unless cached."""
    if scope not in SCOPES:
        raise ValueError(f"INT8 ignored scope {scope!r}: expected one of {sorted(SCOPES)}")
    try:
        import nncf
        import openvino as ov
    except ImportError as exc:
        raise RuntimeError("--precision int8 needs NNCF and OpenVINO: pip install 'sam-triton[build]'") from exc
    onnx_dir = Path(onnx_dir)
    out = onnx_dir / f"int8-{_key(onnx_dir, scope)}"
    if (out / INT8_XML).is_file() and (out / INT8_BIN).is_file():
        log.info("reusing the INT8 encoder in %s", out)
        return out / INT8_XML
    start = time.perf_counter()
    model = ov.Core().read_model(str(onnx_dir / ENCODER_FILE))
    feeds = calibration_feeds()
    patterns = SCOPES[scope]
    quantized = nncf.quantize(
        model,
        nncf.Dataset(feeds),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(feeds),
        ignored_scope=nncf.IgnoredScope(patterns=list(patterns), validate=False) if patterns else None,
    )
    out.mkdir(parents=True, exist_ok=True)
    # saved beside, then renamed: a build killed mid-save must not leave files the cache check would reuse
    scratch = out / f".tmp-{os.getpid()}-{INT8_XML}"  # IR: the .bin sits beside the .xml under the same stem
    ov.save_model(quantized, str(scratch), compress_to_fp16=False)
    os.replace(scratch.with_suffix(".bin"), (out / INT8_XML).with_suffix(".bin"))
    os.replace(scratch, out / INT8_XML)
    seconds = round(time.perf_counter() - start, 1)
    (out / "int8.json").write_text(
        json.dumps({"scope": scope, "patterns": patterns, "calibration": CALIBRATION_PHOTOS, "nncf": nncf.__version__, "seconds": seconds})
        + "\n"
    )
    log.info("quantized the encoder to INT8 (scope %s) in %.0f s: %s", scope, seconds, out)
    return out / INT8_XML
