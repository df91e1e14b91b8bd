"""A model deployed on a Vertex AI endpoint, called through its online prediction API.

Request ``{"instances": [...], "parameters": {...}}`` to
``{base}/v1/projects/P/locations/L/endpoints/E:predict``; answer
``{"predictions": [...], "deployedModelId": "..."}``. A batch is split so that
no request body exceeds Vertex AI's 1.5 MB online limit, and the answers are
joined in order. ``version`` is the ``deployedModelId`` of the last answer, so
every result records which deployed model produced it.

Example::

    model = VertexModel(
        "projects/my-proj/locations/europe-west4/endpoints/1234567890",
        name="fraud",
        signature=Signature(inputs=FEATURES),
    )
    model.load()                  # credentials, and one probe row to learn the version
    scores = model.predict(batch)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any, Literal

import msgspec
import numpy as np

from ...errors import ConfigError
from ..base import Signature, check_batch, empty_prediction
from ._auth import BearerAuth, Credentials, is_loopback
from ._http import (
    BadModelResponse,
    HttpCaller,
    HttpRetry,
    ModelRequestRejected,
    plan_chunks,
    prediction_array,
)

log = logging.getLogger(__name__)
_RESOURCE = re.compile(r"projects/[^/]+/locations/([^/]+)/endpoints/[^/:?#]+")
_encode = msgspec.json.encode


def predict_url(endpoint: str, base_url: str | None = None) -> str:
    """The ``:predict`` URL of an endpoint.

    Args:
        endpoint: ``projects/P/locations/L/endpoints/E`` or a URL containing it.
        base_url: Replaces scheme and host (a local server, a private endpoint).

    Returns:
        ``{base}/v1/projects/P/locations/L/endpoints/E:predict``.

    Raises:
        ConfigError: ``endpoint`` names no endpoint resource.
    """
    found = _RESOURCE.search(endpoint)
    if found is None:
        raise ConfigError(
            f"Vertex AI endpoint {endpoint!r}: expected "
            "projects/PROJECT/locations/LOCATION/endpoints/ENDPOINT_ID or its URL"
        )
    if base_url is not None:
        prefix = base_url.rstrip("/") + "/v1/"
    elif endpoint.startswith(("http://", "https://")):
        prefix = endpoint[: found.start()]
    else:
        prefix = f"https://{found.group(1)}-aiplatform.googleapis.com/v1/"
    return f"{prefix}{found.group(0)}:predict"


class VertexModel:
    """A Vertex AI endpoint behind the ``Model`` protocol.

    Args:
        endpoint: ``projects/P/locations/L/endpoints/E`` or its URL.
        name: Model name recorded with every result; default the endpoint id.
        version: Version recorded until the first answer brings a ``deployedModelId``.
        signature: Input columns (in order) and outputs.
        credentials: google-auth credentials; default ``google.auth.default()``,
            or none at all when the endpoint's URL is a loopback address.
        parameters: Sent as ``"parameters"`` with every request.
        instance_format: ``"list"`` (``[1.0, 2.0]``) or ``"dict"`` (keyed by input name).
        timeout_s: Per-request timeout.
        max_request_bytes: Largest request body; bigger batches are split.
        base_url: Scheme and host to call instead of ``LOCATION-aiplatform.googleapis.com``.
        retry: Retry settings for 429/5xx and network errors.
        probe: When ``version`` is not given, ``load()`` sends one all-zero row
            to learn the ``deployedModelId``.
        client: An ``httpx.Client`` to use (tests, proxies).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        name: str | None = None,
        version: str | None = None,
        signature: Signature,
        credentials: Credentials | None = None,
        parameters: dict[str, Any] | None = None,
        instance_format: Literal["list", "dict"] = "list",
        timeout_s: float = 30.0,
        max_request_bytes: int = 1_500_000,
        base_url: str | None = None,
        retry: HttpRetry | None = None,
        probe: bool = True,
        client: Any = None,
    ) -> None:
        if instance_format not in ("list", "dict"):
            raise ConfigError(f"instance_format {instance_format!r}: expected 'list' or 'dict'")
        self.url = predict_url(endpoint, base_url)
        self.name = name or self.url.rsplit("/", 1)[-1].removesuffix(":predict")
        self.version = version if version is not None else "unknown"
        self.signature = signature
        self.parameters = parameters
        self.instance_format = instance_format
        self.timeout_s = timeout_s
        self.max_request_bytes = max_request_bytes
        self.retry = retry or HttpRetry()
        self._credentials = credentials
        self._anonymous = credentials is None and is_loopback(self.url)
        self._probe = probe and version is None
        self._client = client
        self._caller: HttpCaller | None = None
        self._auth: BearerAuth | None = None
        extra = b',"parameters":' + _encode(parameters) if parameters is not None else b""
        self._suffix = b"]" + extra + b"}"

    @property
    def label(self) -> str:
        """``name@version``, for messages."""
        return f"{self.name}@{self.version}"

    def load(self) -> None:
        """Find credentials and, unless a version was given, probe the endpoint once.

        A probe the endpoint refuses (4xx) still counts as loaded; one whose
        answer does not fit the signature fails here rather than on every event.

        Raises:
            ImportError: httpx or google-auth is missing.
            ConfigError: No Application Default Credentials.
            ModelUnavailable: The endpoint cannot be reached (after retries).
            BadModelResponse: The probe's answer does not fit the signature.
        """
        if self._caller is not None:
            return
        if self._auth is None and not self._anonymous:
            self._auth = BearerAuth(self._credentials, f"vertex:{self.name}")
        self._caller = HttpCaller(
            f"vertex:{self.name}",
            timeout_s=self.timeout_s,
            retry=self.retry,
            headers=self._auth,
            client=self._client,
        )
        if self._probe:
            try:
                self.predict(np.zeros((1, len(self.signature.inputs)), dtype=np.float32))
            except ModelRequestRejected as exc:  # reachable and authorised: good enough
                log.warning("model=%s probe row refused (%s)", self.label, exc)
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        """Close the connection pool; ``load()`` opens a new one."""
        if self._caller is not None:
            self._caller.close()
            self._caller = None

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Score a batch on the endpoint, one prediction per row in the same order.

        Args:
            batch: 2-D array whose columns are ``signature.inputs``.

        Returns:
            ``(n,)`` for one output, else ``(n, len(signature.outputs))``.

        Raises:
            RuntimeError: Called before ``load()``.
            ValueError: ``batch`` is not 2-D with one column per input.
            TooLargeError: One row alone exceeds ``max_request_bytes``.
            ModelUnavailable: The endpoint stayed unavailable through the retries.
            ModelRequestRejected: The endpoint refused the request (4xx).
            BadModelResponse: The answer is not ``{"predictions": [...]}`` with one
                prediction per instance.
        """
        if self._caller is None:
            raise RuntimeError(f"{self.label}: call load() before predict()")
        x = check_batch(batch, self.signature, self.label)
        if x.shape[0] == 0:
            return empty_prediction(self.signature)
        parts = [
            self._read(self._caller.call("POST", self.url, body), rows)
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
        pieces = self.encode_instances(x)
        prefix = b'{"instances":['
        overhead = len(prefix) + len(self._suffix)
        sizes = [len(p) for p in pieces]
        for start, stop in plan_chunks(sizes, limit=self.max_request_bytes, overhead=overhead):
            yield prefix + b",".join(pieces[start:stop]) + self._suffix, stop - start

    def encode_instances(self, x: np.ndarray) -> list[bytes]:
        """Each row as one JSON instance.

        Args:
            x: A float32 batch.

        Returns:
            One encoded instance per row: ``[1.5,2.0]``, or ``{"a":1.5,"b":2.0}``
            keyed by ``signature.inputs`` when ``instance_format="dict"``.
        """
        rows = x.tolist()
        if self.instance_format == "dict":
            names = self.signature.inputs
            return [_encode(dict(zip(names, row, strict=True))) for row in rows]
        return [_encode(row) for row in rows]

    def _read(self, answer: Any, rows: int) -> np.ndarray:
        label = f"vertex:{self.name}"
        if not isinstance(answer, dict) or not isinstance(answer.get("predictions"), list):
            got = sorted(answer) if isinstance(answer, dict) else type(answer).__name__
            raise BadModelResponse(f'{label}: expected {{"predictions": [...]}}, got {got}')
        predictions = answer["predictions"]
        if predictions and isinstance(predictions[0], dict):
            predictions = self._from_objects(predictions, label)
        result = prediction_array(predictions, rows, self.signature, label)
        deployed = answer.get("deployedModelId")
        if isinstance(deployed, str | int) and not isinstance(deployed, bool):
            self.version = str(deployed)
        return result

    def _from_objects(self, predictions: list[Any], label: str) -> list[list[Any]]:
        keys = self.signature.outputs
        try:
            return [[p[k] for k in keys] for p in predictions]
        except (KeyError, TypeError):
            raise BadModelResponse(
                f"{label}: object predictions must all have the keys {list(keys)}, "
                f"got {str(predictions[:2])[:200]}"
            ) from None
