"""Remote model flavours: the model runs behind an HTTP endpoint, scorebus calls it.

* ``VertexModel``: a Vertex AI endpoint (online prediction, ``:predict``).
* ``OipModel``: any Open Inference Protocol v2 server (KServe, Triton, MLServer,
  ``scorebus serve-model``).

Both keep the ``Model`` contract (``predict`` on a 2-D batch keeps order and
length), split a batch so no request exceeds ``max_request_bytes``, retry
429/5xx and network errors with exponential backoff and jitter, and map
failures onto the error tree::

    ModelUnavailable (TransientError)   endpoint down, overloaded, unknown, forbidden
    TooLargeError (PermanentError)      one row alone is over the request limit
    ModelRequestRejected (Permanent)    the endpoint refused the request (400, 413, 422)
    BadModelResponse (Permanent)        a 2xx answer that is not the documented shape

They need ``httpx``, and ``VertexModel`` google-auth with requests unless it
talks to a loopback address: ``pip install 'scorebus[remote]'``.
"""

from ._http import BadModelResponse, HttpRetry, ModelRequestRejected, plan_chunks
from .oip import OipModel
from .vertex import VertexModel, predict_url

__all__ = [
    "BadModelResponse",
    "HttpRetry",
    "ModelRequestRejected",
    "OipModel",
    "VertexModel",
    "plan_chunks",
    "predict_url",
]
