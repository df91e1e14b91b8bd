"""A model behind an Open Inference Protocol v2 server (KServe, Triton, MLServer, scorebus).

The batch travels as one tensor, ``[n, k]`` row-major and flattened::

    POST {url}/v2/models/NAME[/versions/V]/infer
    {"inputs": [{"name": "input-0", "shape": [n, k], "datatype": "FP32", "data": [...]}]}
    -> {"model_name": ..., "model_version": ..., "outputs": [{"name", "shape", "datatype", "data"}]}

``load()`` checks ``/v2/health/ready`` and reads ``/v2/models/NAME`` for the
input tensor's name, datatype and width and the version the server serves.

Example::

    model = OipModel("http://triton:8000", "fraud", signature=Signature(inputs=FEATURES))
    model.load()
    scores = model.predict(batch)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import msgspec
import numpy as np

from ...errors import ModelLoadError
from ..base import Signature, check_batch, empty_prediction
from ._http import BadModelResponse, HttpCaller, HttpRetry, plan_chunks, prediction_array

_encode = msgspec.json.encode
SENDABLE = ("FP32", "FP64")


class OipModel:
    """An Open Inference Protocol v2 endpoint behind the ``Model`` protocol.

    Args:
        url: The server's base URL, e.g. ``http://127.0.0.1:8000``.
        model_name: The model's name on the server.
        version: Pin this version (``/versions/V/infer``); default the server's choice,
            whose version is read from the metadata and every answer.
        signature: Input columns (in order) and outputs.
        name: Model name recorded with every result; default ``model_name``.
        input_name: Input tensor name; default the one in the model's metadata.
        output_name: Output tensor to return (and request); default the first.
        headers: Extra headers sent with every request (an API key, a KServe host).
        timeout_s: Per-request timeout.
        max_request_bytes: Largest request body; bigger batches are split.
        retry: Retry settings for 429/5xx and network errors.
        client: An ``httpx.Client`` to use (tests, proxies).
    """

    def __init__(
        self,
        url: str,
        model_name: str,
        *,
        version: str | None = None,
        signature: Signature,
        name: str | None = None,
        input_name: str | None = None,
        output_name: str | None = None,
        headers: dict[str, str] | None = None,
        timeout_s: float = 30.0,
        max_request_bytes: int = 4_000_000,
        retry: HttpRetry | None = None,
        client: Any = None,
    ) -> None:
        self.base = url.rstrip("/")
        self.model_name = model_name
        self.pinned = version
        self.name = name or model_name
        self.version = version if version is not None else "unknown"
        self.signature = signature
        self.input_name = input_name or "input-0"
        self.output_name = output_name
        self.datatype = "FP32"
        self.timeout_s = timeout_s
        self.max_request_bytes = max_request_bytes
        self.retry = retry or HttpRetry()
        self._headers = dict(headers or {})
        self._client = client
        self._given_input = input_name is not None
        self._caller: HttpCaller | None = None
        path = f"/v2/models/{quote(model_name, safe='')}"
        if version is not None:
            path += f"/versions/{quote(version, safe='')}"
        self.model_url = self.base + path

    @property
    def label(self) -> str:
        """``name@version``, for messages."""
        return f"{self.name}@{self.version}"

    def load(self) -> None:
        """Check the server is ready and read the model's metadata; a second call does nothing.

        Raises:
            ImportError: httpx is missing.
            ModelUnavailable: Server not ready or model unknown (after retries).
            ModelLoadError: The model's input is not one numeric tensor of our width.
        """
        if self._caller is not None:
            return
        caller = HttpCaller(
            f"oip:{self.name}",
            timeout_s=self.timeout_s,
            retry=self.retry,
            headers=lambda url, force: self._headers,
            client=self._client,
        )
        try:
            caller.call("GET", f"{self.base}/v2/health/ready", json=False)
            self._read_metadata(caller.call("GET", self.model_url))
        except BaseException:
            caller.close()
            raise
        self._caller = caller

    def close(self) -> None:
        """Close the connection pool; ``load()`` opens a new one."""
        if self._caller is not None:
            self._caller.close()
            self._caller = None

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Score a batch on the server, one prediction per row in the same order.

        Args:
            batch: 2-D array whose columns are ``signature.inputs``.

        Returns:
            ``(n,)`` for one output, else ``(n, len(signature.outputs))``.

        Raises:
            RuntimeError: Called before ``load()``.
            ValueError: ``batch`` is not 2-D with one column per input.
            TooLargeError: One row alone exceeds ``max_request_bytes``.
            ModelUnavailable: The server stayed unavailable through the retries.
            ModelRequestRejected: The server refused the request (4xx).
            BadModelResponse: The answer has no numeric output of ``n`` rows.
        """
        if self._caller is None:
            raise RuntimeError(f"{self.label}: call load() before predict()")
        x = check_batch(batch, self.signature, self.label)
        if x.shape[0] == 0:
            return empty_prediction(self.signature)
        url = f"{self.model_url}/infer"
        parts = [
            self._read(self._caller.call("POST", url, body), rows)
            for body, rows in self.request_bodies(x)
        ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def request_bodies(self, x: np.ndarray) -> Iterator[tuple[bytes, int]]:
        """The request bodies for a batch, each within ``max_request_bytes``, in order.

        Args:
            x: A float32 batch.

        Returns:
            An iterator of ``(body, number of rows in it)``.

        Raises:
            TooLargeError: One row alone does not fit.
        """
        n, k = x.shape
        # Each row's values without brackets: the tensor's data is flattened row-major.
        pieces = [_encode(row)[1:-1] for row in x.tolist()]
        head = b'{"inputs":[{"name":' + _encode(self.input_name) + b',"shape":['
        tail = b',"datatype":"' + self.datatype.encode() + b'","data":['
        wanted = b""
        if self.output_name:
            wanted = b',"outputs":[{"name":' + _encode(self.output_name) + b"}]"
        suffix = b"]}]" + wanted + b"}"
        # The shape is written with the whole batch's row count: never shorter than a chunk's.
        overhead = len(head) + len(f"{n},{k}]") + len(tail) + len(suffix)
        sizes = [len(p) for p in pieces]
        for start, stop in plan_chunks(sizes, limit=self.max_request_bytes, overhead=overhead):
            shape = f"{stop - start},{k}]".encode()
            yield head + shape + tail + b",".join(pieces[start:stop]) + suffix, stop - start

    def _read_metadata(self, meta: Any) -> None:
        label = f"oip:{self.name}"
        if not isinstance(meta, dict):
            raise BadModelResponse(f"{label}: model metadata is not an object: {meta!r:.200}")
        versions = [str(v) for v in meta.get("versions") or []]
        if self.pinned is None and versions:
            numeric = [v for v in versions if v.isdigit()]
            self.version = max(numeric, key=int) if numeric else versions[-1]
        declared = [i for i in meta.get("inputs") or [] if isinstance(i, dict)]
        names = [i.get("name") for i in declared]
        inputs = [i for i in declared if not self._given_input or i.get("name") == self.input_name]
        if not declared:
            return  # no tensor metadata (allowed by the protocol): keep the defaults
        if len(inputs) != 1:
            wanted = f"no input {self.input_name!r}" if self._given_input else "several inputs"
            raise ModelLoadError(f"{label}: {wanted}; the model has {names}: pass input_name=")
        tensor = inputs[0]
        self.input_name = str(tensor.get("name") or self.input_name)
        datatype = str(tensor.get("datatype") or "FP32")
        if datatype not in SENDABLE:
            raise ModelLoadError(
                f"{label}: input {self.input_name!r} is {datatype}; expected FP32/FP64"
            )
        self.datatype = datatype
        shape = tensor.get("shape") or []
        width = shape[-1] if shape and isinstance(shape[-1], int) else -1
        if width > 0 and len(shape) > 1 and width != len(self.signature.inputs):
            raise ModelLoadError(
                f"{label}: input {self.input_name!r} has shape {shape}, "
                f"the signature has {len(self.signature.inputs)} inputs"
            )

    def _read(self, answer: Any, rows: int) -> np.ndarray:
        label = f"oip:{self.name}"
        outputs = answer.get("outputs") if isinstance(answer, dict) else None
        if not isinstance(outputs, list) or not outputs:
            got = sorted(answer) if isinstance(answer, dict) else type(answer).__name__
            raise BadModelResponse(f'{label}: expected {{"outputs": [...]}}, got {got}')
        tensor = outputs[0]
        if self.output_name is not None:
            named = [
                o for o in outputs if isinstance(o, dict) and o.get("name") == self.output_name
            ]
            tensor = named[0] if named else None
        if not isinstance(tensor, dict) or not isinstance(tensor.get("data"), list):
            raise BadModelResponse(f"{label}: output tensor without JSON data: {tensor!r:.200}")
        shape = tensor.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise BadModelResponse(f"{label}: output shape {shape!r} is not a list of sizes")
        data = np.asarray(_flat_numbers(tensor["data"], label))
        if data.size != math.prod(shape):
            raise BadModelResponse(f"{label}: output shape {shape} holds {data.size} values")
        result = prediction_array(data.reshape(shape), rows, self.signature, label)
        version = answer.get("model_version")
        if isinstance(version, str) and version:
            self.version = version
        return result


def _flat_numbers(data: list[Any], label: str) -> np.ndarray:
    """Tensor data (flat or nested) as one flat numeric array.

    Raises:
        BadModelResponse: Not numbers, or ragged.
    """
    try:
        arr = np.asarray(data)
    except ValueError:
        raise BadModelResponse(f"{label}: output data is ragged") from None
    if arr.dtype.kind not in "biuf" and arr.size:
        raise BadModelResponse(f"{label}: output data must be numbers, got {data!r:.120}")
    return arr.ravel()
