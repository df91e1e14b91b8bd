"""The Vertex AI prediction body, server side: instances in, predictions out.

Request::

    {"instances": [[1.0, 2.0, ...], {"amount": 12.5, "hour": 3, ...}], "parameters": {...}}

Each instance is a list of numbers in ``signature.inputs`` order or an object
keyed by input name (other keys are ignored, so whole events can be sent);
``true``/``false`` count as 1/0. Response::

    {"predictions": [0.03, 0.91], "deployedModelId": "fraud@3"}
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from ..models.base import Signature
from .contract import RequestError

_NUMBER = (int, float, bool)


class VertexRequest(msgspec.Struct):
    """``{"instances": [...], "parameters": {...}}``; parameters are accepted and unused."""

    instances: list[list[float | bool] | dict[str, Any]]
    parameters: dict[str, Any] | None = None


_decoder = msgspec.json.Decoder(VertexRequest)


def decode_instances(body: bytes, signature: Signature) -> np.ndarray:
    """The request's instances as a float32 batch with one column per input.

    Args:
        body: The raw request body.
        signature: The served model's signature.

    Returns:
        A ``(len(instances), len(signature.inputs))`` float32 array.

    Raises:
        RequestError: 400, naming the problem: not JSON, not the documented
            shape, a missing feature, a non-number, or the wrong feature count.
    """
    try:
        request = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise RequestError(400, f'expected {{"instances": [...]}}: {exc}') from None
    except msgspec.DecodeError as exc:
        raise RequestError(400, f"request body is not JSON: {exc}") from None
    names = signature.inputs
    width = len(names)
    rows: list[Any] = []
    for i, instance in enumerate(request.instances):
        if isinstance(instance, dict):
            rows.append(_row_of(instance, names, i))
        elif len(instance) != width:
            raise RequestError(
                400,
                f"instance {i} has {len(instance)} values; the model takes {width}: {list(names)}",
            )
        else:
            rows.append(instance)
    return np.array(rows, dtype=np.float32).reshape(len(rows), width)


def _row_of(instance: dict[str, Any], names: tuple[str, ...], index: int) -> list[Any]:
    missing = [n for n in names if n not in instance]
    if missing:
        raise RequestError(400, f"instance {index} lacks feature(s) {missing}")
    row = [instance[n] for n in names]
    for name, value in zip(names, row, strict=True):
        if not isinstance(value, _NUMBER):
            raise RequestError(
                400, f"instance {index}: feature {name!r} must be a number, got {value!r:.60}"
            )
    return row


def encode_predictions(predictions: Any, rows: int, deployed_model_id: str) -> bytes:
    """The response body.

    Args:
        predictions: What ``model.predict`` returned.
        rows: How many instances were sent.
        deployed_model_id: ``name@version`` of the served model.

    Returns:
        ``{"predictions": [...], "deployedModelId": ...}`` as JSON.

    Raises:
        RequestError: 500 when the model returned a different number of rows.
    """
    arr = np.asarray(predictions)
    if arr.ndim == 0 or arr.shape[0] != rows:
        raise RequestError(500, f"the model returned {arr.shape} for {rows} instances")
    return msgspec.json.encode({"predictions": arr.tolist(), "deployedModelId": deployed_model_id})
