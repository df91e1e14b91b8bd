"""The BigQuery sink: ``bigquery://PROJECT/DATASET/TABLE`` with streaming inserts.

Each batch goes to ``tabledata.insertAll`` (the client's ``insert_rows_json``) in
requests of at most ``chunk`` rows, with ``insertId = "SCORER/EVENT_ID"``, so
BigQuery's best-effort deduplication drops a row that a redelivered event
writes again within its dedupe window (about a minute). The insert id carries
the scorer because the result key is ``(scorer, event id)``: two scorers writing
one table must not drop each other's result for the same event. Best effort is
not exactly-once: a redelivery after the window, or a dedupe miss, makes a second
row; true exactly-once needs the Storage Write API with committed streams and
offsets. Query with ``QUALIFY ROW_NUMBER() OVER (PARTITION BY scorer, event_id
ORDER BY scored_at) = 1`` where duplicates matter.

The table must exist (see ``docs/connectors/bigquery.md`` for its schema). The
client's blocking calls run in a thread.

URL options:

    endpoint   API root URL instead of Google's (an emulator or a test server);
               uses anonymous credentials
    chunk      rows per insertAll request (default 500, Google's recommendation)
    timeout    seconds per HTTP request (default 30)
    retry_s    how long the client itself retries 5xx/429 before the batch is
               handed back to the runtime's backoff (default 10; 0 = never)
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import google.api_core.exceptions as gexc
import google.auth.exceptions as gauth
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from google.cloud.bigquery.retry import DEFAULT_RETRY

from ..errors import ConfigError, SinkUnavailable
from .base import OutboxEvent, ScoreResult

_TRANSIENT_REASONS = frozenset({"backendError", "internalError", "timeout", "rateLimitExceeded"})


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _retry_after(exc: gexc.GoogleAPICallError) -> float:
    response = getattr(exc, "response", None)
    raw = response.headers.get("Retry-After") if response is not None else None
    try:
        return max(0.0, float(raw)) if raw else (5.0 if exc.code == 429 else 1.0)
    except ValueError:
        return 1.0


class BigQuerySink:
    """A write-only sink streaming results into an existing BigQuery table.

    Args:
        url: ``bigquery://PROJECT/DATASET/TABLE[?endpoint=...&chunk=...]``.
        client: a ready ``google.cloud.bigquery.Client`` (otherwise one is built
            from the URL and Application Default Credentials on ``open``).

    Raises:
        ConfigError: the URL does not name a project, dataset and table, or an
            option is not valid.
    """

    def __init__(self, url: str, *, client: bigquery.Client | None = None) -> None:
        self.url = url
        parts = urlsplit(url)
        names = [parts.netloc, *parts.path.strip("/").split("/")]
        if parts.scheme != "bigquery" or len(names) != 3 or not all(names):
            raise ConfigError(
                f"bad BigQuery URL {url!r}: expected bigquery://PROJECT/DATASET/TABLE"
            )
        self.project, self.dataset, self.table = names
        self.table_id = ".".join(names)
        opts = dict(parse_qsl(parts.query))
        unknown = set(opts) - {"endpoint", "chunk", "timeout", "retry_s"}
        if unknown:
            raise ConfigError(f"unknown option(s) {sorted(unknown)} in {url!r}")
        self.endpoint = opts.get("endpoint")
        try:
            self.chunk = int(opts.get("chunk", 500))
            self.timeout = float(opts.get("timeout", 30))
            retry_s = float(opts.get("retry_s", 10))
        except ValueError as exc:
            raise ConfigError(f"bad option in {url!r}: {exc}") from exc
        if not 1 <= self.chunk <= 50_000:
            raise ConfigError(f"bad option chunk={self.chunk} in {url!r}: use 1..50000")
        self._retry = DEFAULT_RETRY.with_timeout(retry_s) if retry_s > 0 else None
        self._client = client

    async def open(self) -> None:
        """Build the client (credentials are looked up here, in a thread).

        Raises:
            ConfigError: no usable Google credentials.
        """
        if self._client is None:
            self._client = await asyncio.to_thread(self._make_client)

    def _make_client(self) -> bigquery.Client:
        try:
            if self.endpoint:
                return bigquery.Client(
                    project=self.project,
                    credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                    client_options={"api_endpoint": self.endpoint},
                )
            return bigquery.Client(project=self.project)
        except gauth.DefaultCredentialsError as exc:
            raise ConfigError(
                f"BigQuery table {self.table_id}: no Google credentials ({exc}): run"
                " `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS"
            ) from exc

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await asyncio.to_thread(client.close)

    async def write(
        self, results: Sequence[ScoreResult], outbox: Sequence[OutboxEvent] = ()
    ) -> int:
        """Stream the results; returns how many rows were sent (after in-batch dedupe).

        BigQuery cannot say which rows it dropped as duplicates, so a redelivered
        batch counts again here; the table keeps one row within the dedupe window.

        Raises:
            ConfigError: the table is missing, access is denied, the rows do not
                match the table's schema, or an outbox was given.
            SinkUnavailable: BigQuery is overloaded or failing (5xx, 429) or
                unreachable; ``retry_after_s`` carries its ``Retry-After``.
        """
        if outbox:
            raise ConfigError(
                f"{self.url}: a BigQuery sink cannot hold an outbox; store results in"
                " sqlite:// or postgresql:// to publish them, or publish without storing"
            )
        rows: dict[str, dict[str, Any]] = {}
        for r in results:
            rows.setdefault(f"{r.scorer}/{r.event_id}", _json_row(r))
        if not rows:
            return 0
        if self._client is None:
            await self.open()
        items = list(rows.items())
        for start in range(0, len(items), self.chunk):
            part = items[start : start + self.chunk]
            await asyncio.to_thread(self._insert, [row for _, row in part], [k for k, _ in part])
        return len(items)

    def _insert(self, rows: list[dict[str, Any]], ids: list[str]) -> None:
        assert self._client is not None
        try:
            errors = self._client.insert_rows_json(
                self.table_id,
                rows,
                row_ids=ids,
                retry=self._retry,  # type: ignore[arg-type]  # None: no client retry
                timeout=self.timeout,
            )
        except Exception as exc:
            translated = _translate(f"BigQuery table {self.table_id}", exc)
            if translated is None:
                raise
            raise translated from exc
        if errors:
            raise _row_errors(f"BigQuery table {self.table_id}", errors)


def _translate(table: str, exc: Exception) -> Exception | None:
    """The scorebus error for a client error, or ``None`` to let it through."""
    if isinstance(exc, gexc.RetryError) and isinstance(exc.cause, Exception):
        # The client's own retries ran out: what matters is the last failure.
        exc = exc.cause
    if isinstance(exc, gexc.Forbidden | gexc.Unauthorized):
        return ConfigError(
            f"{table}: access denied ({exc.message}): grant the caller"
            " roles/bigquery.dataEditor on the dataset"
        )
    if isinstance(exc, gexc.NotFound):
        return ConfigError(
            f"{table}: not found ({exc.message}): check the project, dataset and table"
            " in the URL and create the table (docs/connectors/bigquery.md has its schema)"
        )
    if isinstance(exc, gexc.TooManyRequests | gexc.ServerError):
        return SinkUnavailable(
            f"{table}: {exc.code} {exc.message}", retry_after_s=_retry_after(exc)
        )
    if isinstance(exc, gexc.BadRequest):
        return ConfigError(f"{table}: request rejected: {exc.message}")
    if isinstance(exc, requests.ConnectionError | requests.Timeout | gauth.TransportError):
        return SinkUnavailable(
            f"{table}: cannot reach BigQuery: {exc}: check the network (or the endpoint option)",
            retry_after_s=1.0,
        )
    if isinstance(exc, gauth.RefreshError):
        return ConfigError(f"{table}: credentials rejected: {exc}")
    return None


def _json_row(r: ScoreResult) -> dict[str, Any]:
    return {
        "scorer": r.scorer,
        "event_id": r.event_id,
        "model": r.model,
        "model_version": r.model_version,
        # A JSON column takes its value as a JSON string in insertAll.
        "output": r.output.decode(),
        "event_time": _rfc3339(r.event_time),
        "scored_at": _rfc3339(r.scored_at),
        "latency_ms": r.latency_ms,
        "service_ms": r.service_ms,
    }


def _row_errors(table: str, errors: Sequence[dict[str, Any]]) -> Exception:
    """insertAll answered 200 but refused rows: none of the request was inserted."""
    reasons = [e for row in errors for e in row.get("errors", ()) if e.get("reason") != "stopped"]
    first = reasons[0] if reasons else {"reason": "stopped", "message": "rows not inserted"}
    where = f"row {errors[0].get('index')}"
    if first.get("location"):
        where += f", field {first['location']!r}"
    text = f"{table}: {len(errors)} row(s) refused; {where}: {first.get('reason')}: {first.get('message')}"
    if all(e.get("reason") in _TRANSIENT_REASONS for e in reasons):
        return SinkUnavailable(text, retry_after_s=1.0)
    return ConfigError(text + ": check the table's schema against docs/connectors/bigquery.md")
