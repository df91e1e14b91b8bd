"""Open Inference Protocol v2 tensors, server side, with the binary tensor extension.

The model's features arrive either as one tensor ``[n, k]`` (any name; the
metadata calls it ``input-0``) or as one tensor per feature named after it,
each ``[n]`` or ``[n, 1]``. Data is JSON (flat row-major or nested) or, with
the binary extension that Triton's clients use by default, raw little-endian
bytes after a JSON header of ``Inference-Header-Content-Length`` bytes.
The answer is one tensor ``output-0``, ``[n]`` or ``[n, m]``.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
import numpy as np

from ..models.base import Model, Signature
from .contract import RequestError

DTYPES: dict[str, type[np.generic]] = {
    "BOOL": np.bool_,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP32": np.float32,
    "FP64": np.float64,
}
_KINDS = {"BOOL": "b", "INT32": "iu", "INT64": "iu", "FP32": "fiu", "FP64": "fiu"}
INPUT, OUTPUT = "input-0", "output-0"


class Tensor(msgspec.Struct):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any] | None = None
    parameters: dict[str, Any] = {}


class RequestedOutput(msgspec.Struct):
    name: str
    parameters: dict[str, Any] = {}


class InferRequest(msgspec.Struct):
    inputs: list[Tensor]
    id: str | None = None
    parameters: dict[str, Any] = {}
    outputs: list[RequestedOutput] | None = None


_decoder = msgspec.json.Decoder(InferRequest)


def model_metadata(model: Model) -> dict[str, Any]:
    """``GET /v2/models/NAME``: name, versions, platform, input and output tensors."""
    width = len(model.signature.outputs)
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": f"scorebus/{type(model).__name__}",
        "inputs": [{"name": INPUT, "datatype": "FP32", "shape": [-1, len(model.signature.inputs)]}],
        "outputs": [
            {"name": OUTPUT, "datatype": "FP32", "shape": [-1] if width == 1 else [-1, width]}
        ],
    }


def decode_infer(
    body: bytes, header_length: str | None, signature: Signature
) -> tuple[InferRequest, np.ndarray]:
    """The request and its features as a float32 batch in ``signature.inputs`` order.

    Args:
        body: The raw request body.
        header_length: The ``Inference-Header-Content-Length`` header, if any.
        signature: The served model's signature.

    Returns:
        The decoded request and an ``(n, len(signature.inputs))`` float32 array.

    Raises:
        RequestError: 400, naming what is malformed.
    """
    blob = b""
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise RequestError(
                400, f"Inference-Header-Content-Length {header_length!r} is not valid"
            )
        body, blob = body[: int(header_length)], body[int(header_length) :]
    try:
        request = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise RequestError(400, f'expected {{"inputs": [...]}}: {exc}') from None
    except msgspec.DecodeError as exc:
        raise RequestError(400, f"request body is not JSON: {exc}") from None
    offset, arrays = 0, []
    for tensor in request.inputs:
        array, offset = _array_of(tensor, blob, offset)
        arrays.append(array)
    if offset != len(blob):
        raise RequestError(400, f"{len(blob) - offset} bytes of binary data belong to no input")
    return request, _features(request.inputs, arrays, signature)


def _array_of(tensor: Tensor, blob: bytes, offset: int) -> tuple[np.ndarray, int]:
    where = f"input {tensor.name!r}"
    dtype = DTYPES.get(tensor.datatype)
    if dtype is None:
        raise RequestError(400, f"{where}: datatype {tensor.datatype!r}; supported: {list(DTYPES)}")
    if any(d < 0 for d in tensor.shape):
        raise RequestError(400, f"{where}: shape {tensor.shape} has a negative size")
    count = math.prod(tensor.shape)
    size = tensor.parameters.get("binary_data_size")
    if size is not None:
        nbytes = count * np.dtype(dtype).itemsize
        if not isinstance(size, int) or size != nbytes or offset + size > len(blob):
            raise RequestError(
                400, f"{where}: binary_data_size {size!r}; shape {tensor.shape} needs {nbytes}"
            )
        flat = np.frombuffer(
            blob, dtype=np.dtype(dtype).newbyteorder("<"), count=count, offset=offset
        )
        return flat.reshape(tensor.shape), offset + size
    if tensor.data is None:
        raise RequestError(400, f"{where}: no data and no binary_data_size")
    try:
        values = np.asarray(tensor.data)
    except ValueError:
        raise RequestError(400, f"{where}: data is ragged") from None
    if values.size and values.dtype.kind not in _KINDS[tensor.datatype]:
        raise RequestError(400, f"{where}: data does not match datatype {tensor.datatype}")
    if values.size != count:
        raise RequestError(
            400, f"{where}: shape {tensor.shape} needs {count} values, got {values.size}"
        )
    return values.astype(dtype).reshape(tensor.shape), offset


def _features(inputs: list[Tensor], arrays: list[np.ndarray], signature: Signature) -> np.ndarray:
    names = signature.inputs
    if len(arrays) == 1:
        x = arrays[0]
        if x.ndim == 1 and len(names) == 1:
            x = x.reshape(-1, 1)
        if x.ndim != 2 or x.shape[1] != len(names):
            raise RequestError(
                400,
                f"input {inputs[0].name!r} has shape {list(x.shape)}; expected [n, {len(names)}] for {list(names)}",
            )
        return np.ascontiguousarray(x, dtype=np.float32)
    by_name = dict(zip((t.name for t in inputs), arrays, strict=True))
    if set(by_name) != set(names) or len(by_name) != len(arrays):
        raise RequestError(
            400,
            f"inputs {[t.name for t in inputs]}: send one [n, {len(names)}] tensor or one per feature {list(names)}",
        )
    columns = []
    for name in names:
        column = by_name[name]
        if column.ndim == 2 and column.shape[1] == 1:
            column = column[:, 0]
        if column.ndim != 1 or column.shape[0] != arrays[0].shape[0]:
            raise RequestError(400, "per-feature inputs must each be [n] or [n, 1], the same n")
        columns.append(column)
    return np.ascontiguousarray(np.column_stack(columns), dtype=np.float32)


def encode_infer(
    request: InferRequest, predictions: Any, rows: int, model: Model
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary data follows it.

    Args:
        request: The decoded request (id, requested outputs, binary flags).
        predictions: What ``model.predict`` returned.
        rows: How many rows were sent.
        model: The served model (name and version).

    Returns:
        ``(body, header_length)``; ``header_length`` is ``None`` for plain JSON.

    Raises:
        RequestError: 400 for an unknown requested output; 500 when the model
            returned a different number of rows.
    """
    arr = np.asarray(predictions)
    if arr.ndim == 0 or arr.shape[0] != rows:
        raise RequestError(500, f"the model returned {arr.shape} for {rows} rows")
    binary = bool(request.parameters.get("binary_data_output", False))
    for wanted in request.outputs or ():
        if wanted.name != OUTPUT:
            raise RequestError(400, f"unknown output {wanted.name!r}; the model has {OUTPUT!r}")
        binary = bool(wanted.parameters.get("binary_data", binary))
    if arr.dtype.kind == "f" and arr.dtype != np.float64:
        arr = arr.astype(np.float32)  # float16 and friends have no FP type here
    elif arr.dtype.kind in "iu" and arr.dtype != np.int32:
        arr = arr.astype(np.int64)
    datatype = next((k for k, v in DTYPES.items() if arr.dtype == v), None)
    tensor: dict[str, Any] = {"name": OUTPUT, "shape": list(arr.shape)}
    raw = b""
    if datatype is None:  # labels as text: JSON only
        tensor.update(datatype="BYTES", data=[str(v) for v in arr.ravel().tolist()])
    elif binary:
        raw = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
        tensor.update(datatype=datatype, parameters={"binary_data_size": len(raw)})
    else:
        tensor.update(datatype=datatype, data=arr.ravel().tolist())
    answer: dict[str, Any] = {
        "model_name": model.name,
        "model_version": model.version,
        "outputs": [tensor],
    }
    if request.id is not None:
        answer["id"] = request.id
    head = msgspec.json.encode(answer)
    return (head + raw, len(head)) if raw else (head, None)
