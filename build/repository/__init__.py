"""The Triton model repository: config.pbtxt (built as ModelConfig messages), the python-backend model template and the per-runtime assembly."""
