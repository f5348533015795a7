"""PyTorch -> ONNX: the two graphs (encoder with SAM's preprocessing, prompt encoder + mask decoder), checked with ONNX Runtime against SamPredictor, cached by the weights' hash."""
