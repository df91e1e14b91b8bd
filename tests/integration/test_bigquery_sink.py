"""The BigQuery sink against a local HTTP server that speaks ``tabledata.insertAll``.

This is a protocol test, not BigQuery: the real client library
(google-cloud-bigquery) sends its real requests, pointed at a small
``http.server`` with ``client_options={"api_endpoint": ...}`` and anonymous
credentials. It pins the request bodies (insert ids, row JSON, chunking) and the
translation of BigQuery's answers into scorebus errors. BigQuery's own
deduplication, quotas and schema checks are not exercised here.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgspec
import pytest

from scorebus.errors import ConfigError, SinkUnavailable
from scorebus.events import Event
from scorebus.sinks import Sink, open_sink, open_store
from scorebus.sinks.base import OutboxEvent, ResultStore, ScoreResult
from scorebus.sinks.bigquery import BigQuerySink

PATH = "/bigquery/v2/projects/proj/datasets/ds/tables/scores/insertAll?prettyPrint=false"
T0 = 1_700_000_000.25  # 2023-11-14T22:13:20.25Z


class FakeBigQuery:
    """Records insertAll requests; answers with the scripted replies, then 200."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self.replies: list[tuple[int, dict[str, Any], dict[str, str]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                fake.requests.append((self.command, self.path, json.loads(body)))
                status, reply, headers = (
                    fake.replies.pop(0)
                    if fake.replies
                    else (200, {"kind": "bigquery#tableDataInsertAllResponse"}, {})
                )
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def error(self, status: int, message: str, reason: str, **headers: str) -> None:
        body = {"error": {"code": status, "message": message, "errors": [{"reason": reason}]}}
        self.replies.append((status, body, headers))

    def url(self, **options: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in {"endpoint": self.endpoint, **options}.items())
        return f"bigquery://proj/ds/scores?{query}"


@pytest.fixture
def bq() -> Iterator[FakeBigQuery]:
    fake = FakeBigQuery()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
    fake.thread.join(5)


def _result(event_id: str, scorer: str = "fraud", output: Any = None) -> ScoreResult:
    return ScoreResult(
        scorer=scorer,
        event_id=event_id,
        model="gbm",
        model_version="4",
        output=msgspec.json.encode({"score": 0.5} if output is None else output),
        event_time=T0,
        scored_at=T0 + 0.5,
        latency_ms=500.0,
        service_ms=2.5,
    )


async def _write(url: str, *batches: list[ScoreResult]) -> list[int]:
    sink = open_sink(url)
    await sink.open()
    try:
        return [await sink.write(b) for b in batches]
    finally:
        await sink.close()


def test_a_bigquery_url_gives_a_write_only_sink(bq: FakeBigQuery) -> None:
    sink = open_sink(bq.url())

    assert isinstance(sink, BigQuerySink) and isinstance(sink, Sink)
    assert not isinstance(sink, ResultStore)
    assert sink.table_id == "proj.ds.scores"
    with pytest.raises(ConfigError, match="write-only sink"):
        open_store(bq.url())


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("bigquery://proj/ds", "expected bigquery://PROJECT/DATASET/TABLE"),
        ("bigquery://proj/ds/t/extra", "expected bigquery://PROJECT/DATASET/TABLE"),
        ("bigquery://proj/ds/t?chunk=0", "use 1..50000"),
        ("bigquery://proj/ds/t?timeout=soon", "bad option"),
        ("bigquery://proj/ds/t?region=eu", "unknown option"),
    ],
)
def test_bad_urls_are_config_errors(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        BigQuerySink(url)


def test_rows_are_streamed_with_insert_ids_for_dedupe(bq: FakeBigQuery) -> None:
    batch = [_result("e1", output={"score": 0.9, "flag": True}), _result("e2"), _result("e1")]

    counts = asyncio.run(_write(bq.url(), batch, batch[:2]))

    assert counts == [2, 2]  # BigQuery cannot say which rows it dropped as duplicates
    (method, path, body), again = bq.requests[0], bq.requests[1]
    assert (method, path) == ("POST", PATH)
    assert body == {
        "rows": [
            {
                "insertId": "fraud/e1",
                "json": {
                    "scorer": "fraud",
                    "event_id": "e1",
                    "model": "gbm",
                    "model_version": "4",
                    "output": '{"score":0.9,"flag":true}',
                    "event_time": "2023-11-14T22:13:20.250000Z",
                    "scored_at": "2023-11-14T22:13:20.750000Z",
                    "latency_ms": 500.0,
                    "service_ms": 2.5,
                },
            },
            {
                "insertId": "fraud/e2",
                "json": {**body["rows"][0]["json"], "event_id": "e2", "output": '{"score":0.5}'},
            },
        ]
    }
    # A redelivered batch sends the same insert ids, which is what BigQuery dedupes on.
    assert again[2] == body


def test_the_insert_id_keeps_scorers_apart(bq: FakeBigQuery) -> None:
    asyncio.run(_write(bq.url(), [_result("e1", "fraud"), _result("e1", "churn")]))

    (_, _, body) = bq.requests[0]
    assert [row["insertId"] for row in body["rows"]] == ["fraud/e1", "churn/e1"]


def test_large_batches_are_sent_in_chunks(bq: FakeBigQuery) -> None:
    counts = asyncio.run(_write(bq.url(chunk="2"), [_result(f"e{i}") for i in range(5)]))

    assert counts == [5]
    sent = [[row["insertId"] for row in body["rows"]] for _, _, body in bq.requests]
    assert sent == [["fraud/e0", "fraud/e1"], ["fraud/e2", "fraud/e3"], ["fraud/e4"]]


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        (404, "notFound", r"proj\.ds\.scores: not found .*create the table"),
        (403, "accessDenied", r"proj\.ds\.scores: access denied .*bigquery\.dataEditor"),
        (400, "invalid", r"proj\.ds\.scores: request rejected"),
    ],
)
def test_client_errors_are_config_errors_naming_the_table(
    bq: FakeBigQuery, status: int, reason: str, expected: str
) -> None:
    bq.error(status, f"{reason}: Table proj:ds.scores", reason)

    with pytest.raises(ConfigError, match=expected):
        asyncio.run(_write(bq.url(retry_s="0"), [_result("e1")]))


@pytest.mark.parametrize(
    ("status", "headers", "retry_after"),
    [(503, {"Retry-After": "7"}, 7.0), (500, {}, 1.0), (429, {}, 5.0)],
)
def test_server_errors_and_throttling_are_transient_with_retry_after(
    bq: FakeBigQuery, status: int, headers: dict[str, str], retry_after: float
) -> None:
    bq.error(status, "backend busy", "backendError", **headers)

    with pytest.raises(SinkUnavailable, match=rf"proj\.ds\.scores: {status} ") as info:
        asyncio.run(_write(bq.url(retry_s="0"), [_result("e1")]))

    assert info.value.retry_after_s == retry_after
    assert len(bq.requests) == 1  # retry_s=0: the runtime's backoff retries, not the client


def test_the_client_retries_a_brief_outage_itself(bq: FakeBigQuery) -> None:
    bq.error(503, "backend busy", "backendError")

    started = time.monotonic()
    counts = asyncio.run(_write(bq.url(retry_s="10"), [_result("e1")]))

    assert counts == [1]
    assert [body["rows"][0]["insertId"] for _, _, body in bq.requests] == ["fraud/e1"] * 2
    assert time.monotonic() - started < 5


def test_refused_rows_name_the_row_and_field(bq: FakeBigQuery) -> None:
    bq.replies.append(
        (
            200,
            {
                "insertErrors": [
                    {
                        "index": 1,
                        "errors": [
                            {"reason": "invalid", "location": "output", "message": "bad JSON"}
                        ],
                    },
                    {"index": 0, "errors": [{"reason": "stopped", "message": ""}]},
                ]
            },
            {},
        )
    )

    with pytest.raises(ConfigError, match=r"2 row\(s\) refused; row 1, field 'output': invalid"):
        asyncio.run(_write(bq.url(), [_result("e1"), _result("e2")]))


def test_an_unreachable_endpoint_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"bigquery://proj/ds/scores?endpoint=http://127.0.0.1:{port}&retry_s=0&timeout=2"

    with pytest.raises(SinkUnavailable, match="cannot reach BigQuery"):
        asyncio.run(_write(url, [_result("e1")]))


def test_an_outbox_is_refused_not_dropped(bq: FakeBigQuery) -> None:
    outbox = [OutboxEvent(topic="t", key="e1", scorer="fraud", event=Event.new("x", b"{}"))]

    async def scenario() -> None:
        sink = BigQuerySink(bq.url())
        await sink.open()
        try:
            with pytest.raises(ConfigError, match="cannot hold an outbox"):
                await sink.write([_result("e1")], outbox)
            assert await sink.write([]) == 0
        finally:
            await sink.close()

    asyncio.run(scenario())
    assert bq.requests == []
