"""sam_triton.client: SAM over Triton's gRPC protocol, with SamPredictor's API.

Depends only on numpy, pillow and tritonclient[grpc]; never on torch or tensorrt.
"""

from .client import SamClient
from .contract import DEFAULT_LIMITS, Limits
from .errors import (
    ClientClosedError,
    InvalidInputError,
    InvalidRequestError,
    ModelNotFoundError,
    NoImageSetError,
    RequestTimeoutError,
    SamTritonError,
    ServerError,
    ServerUnavailableError,
)

__all__ = [
    "SamClient",
    "Limits",
    "DEFAULT_LIMITS",
    "SamTritonError",
    "InvalidInputError",
    "NoImageSetError",
    "ClientClosedError",
    "ServerError",
    "InvalidRequestError",
    "ServerUnavailableError",
    "ModelNotFoundError",
    "RequestTimeoutError",
]
