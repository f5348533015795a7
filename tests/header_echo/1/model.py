"""header_echo: returns the request's parameters (a JSON object) as one string (test model)."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            parameters = request.parameters()  # JSON text of the request's parameters
            out = pb_utils.Tensor("parameters", np.array([parameters.encode()], dtype=np.object_))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
