"""sam_triton.build: checkpoint -> ONNX -> TensorRT engines -> Triton model repository -> tritonserver.

Subpackages in flow order: ``models`` (which SAM), ``export`` (ONNX, checked), ``tensorrt``
(engines), ``repository`` (configs and python models), ``server`` (the launcher); ``demo`` runs
them all end to end. torch, onnx and tensorrt are imported lazily, inside the functions that need
them. This package imports ``sam_triton.client`` (the contract, SAM's numpy pre/postprocessing)
and nothing of ``perf`` or ``cli``.
"""
