"""sam_triton.build: checkpoint -> ONNX -> (TensorRT) -> Triton model repository, server launcher, CLI.

torch, onnx and tensorrt are imported lazily, inside the functions that need them, so the CLI's
client-side commands run on the bare client install.
"""
