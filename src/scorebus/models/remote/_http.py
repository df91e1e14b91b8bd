"""What every remote flavour shares: request splitting, retries with backoff, error mapping.

How an HTTP outcome becomes a scorebus error (the runtime only tells
permanent from transient)::

    2xx, JSON body             -> decoded answer
    2xx, not JSON              -> BadModelResponse        (PermanentError)
    429, 5xx, network, timeout -> retried with backoff (Retry-After honoured),
                                  then ModelUnavailable   (TransientError)
    401                        -> credentials refreshed once, then as 403
    403, 404                   -> ModelUnavailable        (wrong endpoint or IAM:
                                  an operator can fix it, so the events wait)
    other 4xx                  -> ModelRequestRejected    (PermanentError)
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import numpy as np

from ...errors import ModelUnavailable, PermanentError, TooLargeError
from ..base import Signature

log = logging.getLogger(__name__)

HeadersFn = Callable[[str, bool], dict[str, str]]  # (url, force_refresh) -> headers


class BadModelResponse(PermanentError):
    """The endpoint answered 2xx with something that is not the documented shape."""

    reason = "bad_model_response"


class ModelRequestRejected(PermanentError):
    """The endpoint refused the request itself (400, 413, 422): retrying cannot help."""

    reason = "model_rejected"


class HttpRetry(msgspec.Struct, frozen=True, kw_only=True):
    """How a remote model retries one request.

    Args:
        max_attempts: Tries per request, the first included.
        base_delay_s: Backoff before the second try; doubles each time (full jitter).
        max_delay_s: Cap of one backoff.
        max_retry_after_s: A longer ``Retry-After`` is not waited for here: the
            request fails at once with ``retry_after_s`` set, for the runtime to nack.
        statuses: HTTP statuses that are retried.
    """

    max_attempts: int = 4
    base_delay_s: float = 0.1
    max_delay_s: float = 5.0
    max_retry_after_s: float = 30.0
    statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})


def backoff_delay(attempt: int, policy: HttpRetry, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed try number ``attempt`` (1-based): full jitter.

    Args:
        attempt: How many tries have failed so far.
        policy: The retry settings.
        rng: Source of jitter (for tests).

    Returns:
        A delay in ``[0, min(max_delay_s, base_delay_s * 2 ** (attempt - 1))]``.
    """
    cap = min(policy.max_delay_s, policy.base_delay_s * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(0.0, cap)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """The ``Retry-After`` header in seconds: delta-seconds or an HTTP date.

    Args:
        value: The header value, or ``None``.
        now: Current Unix time (for tests).

    Returns:
        Seconds to wait (never negative), or ``None`` when absent or unreadable.
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def plan_chunks(
    sizes: Sequence[int], *, limit: int, overhead: int, separator: int = 1
) -> list[tuple[int, int]]:
    """Split encoded rows into runs whose request body stays within ``limit`` bytes.

    A body is ``overhead`` bytes of envelope plus the rows joined by a
    ``separator``-byte delimiter. Runs are greedy and keep the rows' order.

    Args:
        sizes: Encoded size of each row, in order.
        limit: Maximum body size in bytes.
        overhead: Bytes of the envelope around the rows.
        separator: Bytes between two rows.

    Returns:
        ``(start, stop)`` slices covering every row once, in order (none for no rows).

    Raises:
        TooLargeError: One row alone does not fit: that event can never be sent.
    """
    chunks: list[tuple[int, int]] = []
    start, used = 0, overhead
    for i, size in enumerate(sizes):
        if overhead + size > limit:
            raise TooLargeError(
                f"row {i} encodes to {size} bytes; with the {overhead}-byte envelope "
                f"it exceeds the {limit}-byte request limit"
            )
        extra = size if i == start else size + separator
        if used + extra > limit:
            chunks.append((start, i))
            start, used = i, overhead + size
        else:
            used += extra
    if start < len(sizes):
        chunks.append((start, len(sizes)))
    return chunks


class HttpCaller:
    """Sends JSON requests with retries; one per remote model, safe across threads.

    Args:
        label: Names the model in messages (``name@endpoint``).
        timeout_s: Per-try timeout.
        retry: Retry settings.
        headers: Returns the headers for a URL; ``force_refresh`` after a 401.
        client: An ``httpx.Client`` to use (the caller closes it); default a new one.
    """

    def __init__(
        self,
        label: str,
        *,
        timeout_s: float,
        retry: HttpRetry,
        headers: HeadersFn | None = None,
        client: Any = None,
    ) -> None:
        try:
            import httpx
        except ImportError as exc:
            raise ImportError("remote models need httpx: pip install 'scorebus[remote]'") from exc
        self._httpx = httpx
        self.label = label
        self.retry = retry
        self._headers = headers or (lambda url, force: {})
        self._owns_client = client is None
        self._client = client or self._httpx.Client(timeout=timeout_s)

    def close(self) -> None:
        """Close the connection pool, unless it was given."""
        if self._owns_client:
            self._client.close()

    def call(self, method: str, url: str, body: bytes | None = None, *, json: bool = True) -> Any:
        """Send one request, retrying transient failures, and decode the JSON answer.

        Args:
            method: ``"GET"`` or ``"POST"``.
            url: Absolute URL.
            body: JSON request body for a POST.
            json: Decode the answer; ``False`` returns its bytes (health checks).

        Returns:
            The decoded JSON answer (or the bytes) of a 2xx response.

        Raises:
            ModelUnavailable: Retries exhausted, a long ``Retry-After``, 401/403/404.
            ModelRequestRejected: Any other 4xx.
            BadModelResponse: A 2xx whose body is not JSON.
        """
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            headers.update(self._headers(url, refreshed))
            try:
                response = self._client.request(method, url, content=body, headers=headers)
            except self._httpx.HTTPError as exc:
                self._wait_or_raise(attempt, None, f"{type(exc).__name__}: {exc}", exc)
                continue
            status = response.status_code
            if 200 <= status < 300:
                return self._decode(response.content, status) if json else response.content
            detail = _error_text(response.content)
            if status == 401 and not refreshed:
                refreshed = True
                attempt -= 1
                continue
            if status in self.retry.statuses:
                after = parse_retry_after(response.headers.get("retry-after"))
                self._wait_or_raise(attempt, after, f"HTTP {status}: {detail}", None)
                continue
            message = f"{self.label}: {method} {url} -> HTTP {status}: {detail}"
            if status in (401, 403, 404):
                raise ModelUnavailable(message)
            raise ModelRequestRejected(message)

    def _wait_or_raise(
        self, attempt: int, retry_after: float | None, why: str, cause: BaseException | None
    ) -> None:
        policy = self.retry
        too_long = retry_after is not None and retry_after > policy.max_retry_after_s
        if attempt >= policy.max_attempts or too_long:
            tries = f"{attempt} tries" if not too_long else f"Retry-After {retry_after:g}s"
            raise ModelUnavailable(
                f"{self.label}: endpoint unavailable after {tries}: {why}",
                retry_after_s=retry_after,
            ) from cause
        delay = max(retry_after or 0.0, backoff_delay(attempt, policy))
        log.info("model=%s try %d failed (%s); retrying in %.2fs", self.label, attempt, why, delay)
        time.sleep(delay)

    def _decode(self, content: bytes, status: int) -> Any:
        try:
            return msgspec.json.decode(content)
        except msgspec.DecodeError:
            raise BadModelResponse(
                f"{self.label}: HTTP {status} answer is not JSON: {content[:200]!r}"
            ) from None


def _error_text(content: bytes) -> str:
    try:
        decoded = msgspec.json.decode(content)
    except msgspec.DecodeError:
        return content[:300].decode("utf-8", "replace") or "(empty body)"
    if isinstance(decoded, dict):
        error = decoded.get("error")
        if isinstance(error, dict):  # Google APIs: {"error": {"code", "message", "status"}}
            error = error.get("message", error)
        if error is not None:
            return str(error)[:300]
    return str(decoded)[:300]


def prediction_array(values: Any, rows: int, signature: Signature, label: str) -> np.ndarray:
    """Check a decoded answer and shape it like a local model's prediction.

    Args:
        values: Numbers, one per row, or equal-length lists of numbers.
        rows: How many rows were sent.
        signature: The model's signature (``outputs`` gives the expected width).
        label: Names the model in messages.

    Returns:
        ``(rows,)`` for one output, else ``(rows, len(signature.outputs))``;
        float32 for real numbers, integer and boolean answers keep their type.

    Raises:
        BadModelResponse: Not numeric, ragged, or the wrong number of rows or columns.
    """
    try:
        arr = np.asarray(values)
    except ValueError as exc:  # ragged nesting
        raise BadModelResponse(f"{label}: predictions are not a regular array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise BadModelResponse(f"{label}: predictions must be numbers, got {values!r:.120}")
    if arr.ndim == 0 or arr.shape[0] != rows:
        got = 1 if arr.ndim == 0 else arr.shape[0]
        raise BadModelResponse(f"{label}: sent {rows} rows, got {got} predictions")
    width = len(signature.outputs)
    if arr.ndim == 2 and arr.shape[1] == 1 and width == 1:
        arr = arr[:, 0]
    if not (arr.ndim == 1 and width == 1) and not (arr.ndim == 2 and arr.shape[1] == width):
        raise BadModelResponse(
            f"{label}: expected {width} output(s) {list(signature.outputs)} per row, "
            f"got predictions of shape {list(arr.shape)}"
        )
    return arr.astype(np.float32) if arr.dtype.kind == "f" else arr
