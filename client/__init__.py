"""sam_triton.client: SAM over Triton's gRPC protocol, with SamPredictor's API.

``SamClient`` (blocking) and ``AsyncSamClient`` (asyncio) share one API: set_image, predict,
predict_batch, segment and generate (SamAutomaticMaskGenerator's masks). Depends only on numpy,
pillow and tritonclient[grpc]; never on torch or tensorrt.
"""

from tritonclient.grpc import KeepAliveOptions  # tritonclient's, re-exported for keepalive_options=

from .aio import AsyncSamClient
from .amg.generator import MaskGeneratorOptions
from .client import SamClient
from .contract import DEFAULT_LIMITS, Limits
from .errors import (
    ClientClosedError,
    ClientNotOpenError,
    InvalidInputError,
    InvalidRequestError,
    ModelNotFoundError,
    NoImageSetError,
    PreviousMaskLostError,
    RequestTimeoutError,
    SamTritonError,
    ServerError,
    ServerUnavailableError,
    SessionNotFoundError,
    SharedMemoryError,
    TransportUnavailableError,
)
from .transport.ops import RetryPolicy

__all__ = [
    "DEFAULT_LIMITS",
    "AsyncSamClient",
    "ClientClosedError",
    "ClientNotOpenError",
    "InvalidInputError",
    "InvalidRequestError",
    "KeepAliveOptions",
    "Limits",
    "MaskGeneratorOptions",
    "ModelNotFoundError",
    "NoImageSetError",
    "PreviousMaskLostError",
    "RequestTimeoutError",
    "RetryPolicy",
    "SamClient",
    "SamTritonError",
    "ServerError",
    "ServerUnavailableError",
    "SessionNotFoundError",
    "SharedMemoryError",
    "TransportUnavailableError",
]
