"""ONNX -> TensorRT FP16 plans: optimization profiles from the contract, FP32 precision groups, ONNX-parser op coverage, the post-build check and each plan's metadata.

TensorRT and cuda-python are imported lazily, inside the functions that need them: everything
else here runs, and is tested, on machines without a GPU."""
