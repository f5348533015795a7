"""PyTorch -> ONNX: ``sam_encoder.onnx``, ``sam_decoder.onnx`` and a manifest beside them.

Dynamic axes come from the contract's ``TensorSpec``s (batch, prompts, points), so the graphs,
config.pbtxt and TensorRT profiles share one source. Graphs over 2 GB (ViT-H) are written with
external data in one ``<name>.onnx.data`` file beside the graph.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Dict, Optional, Sequence

from sam_triton.client import contract
from sam_triton.client.contract import TensorSpec

from ..models.presets import ModelSource

log = logging.getLogger(__name__)

OPSET = 17
ENCODER_FILE = "sam_encoder.onnx"
DECODER_FILE = "sam_decoder.onnx"
MANIFEST_FILE = "manifest.json"
# protobuf's hard limit is 2 GiB; stay clear of it.
EXTERNAL_DATA_THRESHOLD_BYTES = 1_800_000_000


def dynamic_axes(specs: Sequence[TensorSpec]) -> Dict[str, Dict[int, str]]:
    """ONNX dynamic axes of tensors with a leading batch dim: 'batch' plus each spec's named -1 dims."""
    axes: Dict[str, Dict[int, str]] = {}
    for spec in specs:
        names = iter(spec.axis_names)
        entry = {0: "batch"}
        for i, dim in enumerate(spec.dims):
            if dim == -1:
                entry[i + 1] = next(names)
        axes[spec.name] = entry
    return axes


def _dummy_inputs(specs: Sequence[TensorSpec], sizes: Dict[str, int]):
    """Tracing inputs; variable dims get distinct sizes > 1 so no dim is specialized to a constant."""
    import torch

    tensors = []
    for spec in specs:
        names = iter(spec.axis_names)
        shape = [sizes["batch"]] + [sizes[next(names)] if d == -1 else d for d in spec.dims]
        if spec.dtype == "UINT8":
            tensors.append(torch.randint(0, 256, shape, dtype=torch.uint8))
        elif spec.dtype == "INT32":
            tensors.append(torch.full(shape, contract.IMAGE_SIZE, dtype=torch.int32))
        else:
            tensors.append(torch.rand(shape, dtype=torch.float32))
    return tuple(tensors)


def _export_graph(module, specs_in, specs_out, path: Path, *, opset: int, sizes: Dict[str, int]) -> None:
    import torch

    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        tmp_path = Path(tmp) / path.name
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings on SAM's python-int shape arithmetic
            torch.onnx.export(
                module,
                _dummy_inputs(specs_in, sizes),
                str(tmp_path),
                input_names=[s.name for s in specs_in],
                output_names=[s.name for s in specs_out],
                dynamic_axes=dynamic_axes(tuple(specs_in) + tuple(specs_out)),
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        _save_single_file(tmp_path, path)


def _save_single_file(src: Path, dst: Path) -> None:
    """Re-save a graph as one .onnx (or .onnx + one .onnx.data when over the protobuf limit)."""
    import onnx

    size = sum(f.stat().st_size for f in src.parent.iterdir())
    for old in (dst, dst.with_name(dst.name + ".data")):
        old.unlink(missing_ok=True)
    if size < EXTERNAL_DATA_THRESHOLD_BYTES:
        if any(f != src for f in src.parent.iterdir()):
            onnx.save_model(onnx.load(str(src)), str(dst))
        else:
            shutil.move(str(src), str(dst))
        return
    model = onnx.load(str(src))
    onnx.save_model(model, str(dst), save_as_external_data=True, all_tensors_to_one_file=True, location=dst.name + ".data")


def graph_summary(path: Path) -> dict:
    """Opsets, op counts and I/O shapes of a graph, read back from the file (the manifest's entry)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def shape(value_info) -> list:
        dims = value_info.type.tensor_type.shape.dim
        return [d.dim_param if d.dim_param else d.dim_value for d in dims]

    def dtype(value_info) -> str:
        return onnx.TensorProto.DataType.Name(value_info.type.tensor_type.elem_type)

    return {
        "file": path.name,
        "external_data": path.with_name(path.name + ".data").exists(),
        "opset_imports": {imp.domain or "ai.onnx": imp.version for imp in model.opset_import},
        "inputs": [{"name": v.name, "dtype": dtype(v), "shape": shape(v)} for v in model.graph.input],
        "outputs": [{"name": v.name, "dtype": dtype(v), "shape": shape(v)} for v in model.graph.output],
        "ops": dict(sorted(Counter(n.op_type for n in model.graph.node).items())),
    }


def export_onnx(sam, source: ModelSource, out_dir: Path, *, opset: int = OPSET) -> dict:
    """Export both graphs into ``out_dir`` and write ``manifest.json``; returns the manifest."""
    import onnx
    import torch

    from .onnx_modules import SamDecoderGraph, SamEncoderGraph

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    timings = {}
    start = time.perf_counter()
    _export_graph(
        SamEncoderGraph(sam).eval(),
        contract.ENCODER_INPUTS,
        contract.ENCODER_OUTPUTS,
        out_dir / ENCODER_FILE,
        opset=opset,
        sizes={"batch": 2},
    )
    timings["encoder_s"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    _export_graph(
        SamDecoderGraph(sam).eval(),
        contract.DECODER_INPUTS,
        contract.DECODER_OUTPUTS,
        out_dir / DECODER_FILE,
        opset=opset,
        sizes={"batch": 2, "prompts": 3, "points": 5},
    )
    timings["decoder_s"] = round(time.perf_counter() - start, 2)
    manifest = {
        "model_type": source.model_type,
        "weights": source.weights_id,
        "source": source.description,
        "opset": opset,
        "exporter": {"torch": torch.__version__, "onnx": onnx.__version__},
        "export_seconds": timings,
        "graphs": {
            contract.ENCODER_MODEL: graph_summary(out_dir / ENCODER_FILE),
            contract.DECODER_MODEL: graph_summary(out_dir / DECODER_FILE),
        },
    }
    write_manifest(out_dir, manifest)
    log.info("exported %s to %s in %s", source.description, out_dir, timings)
    return manifest


def write_manifest(out_dir: Path, manifest: dict) -> None:
    (Path(out_dir) / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=str) + "\n")


def read_manifest(out_dir: Path) -> Optional[dict]:
    path = Path(out_dir) / MANIFEST_FILE
    return json.loads(path.read_text()) if path.is_file() else None
