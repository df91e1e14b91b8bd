"""The Cloud Functions entry point, served by the real functions-framework runtime.

Each test posts Pub/Sub push bodies to a running ``functions-framework``
process, the way a push subscription (or Eventarc) does, and checks the HTTP
answer and the results and dead-letter stores.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

APP = """
import msgspec
from scorebus import App
from scorebus.errors import ModelUnavailable


class Order(msgspec.Struct):
    amount: float
    flaky: bool = False


app = App("fnapp")


@app.scorer(subscribe="orders", schema=Order, name="price")
def price(orders, _):
    if any(o.flaky for o in orders):
        raise ModelUnavailable("pricing service down")
    return [{"total": round(o.amount * 1.2, 2)} for o in orders]
"""

MAIN = 'from scorebus.gcp.functions import entry_point; score = entry_point("pipeline:app")\n'
PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def function(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("function")
    (root / "pipeline.py").write_text(APP)
    (root / "main.py").write_text(MAIN)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOREBUS_")}
    env.update(SCOREBUS_STORE=f"sqlite:///{root}/scores.db", SCOREBUS_REGISTRY=str(root / "models"))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "functions_framework",
            "--target",
            "score",
            "--source",
            "main.py",
            "--signature-type",
            "cloudevent",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.TransportError:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.2)
    try:
        yield url, root
    finally:
        proc.terminate()
        proc.wait(20)
        if proc.stderr:
            proc.stderr.close()


def _push_body(
    data: object, *, event_id: str | None, attempt: int | None = None
) -> dict[str, object]:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    attrs = (
        {"ce-id": event_id, "ce-type": "shop.order", "ce-source": "tests", "ce-specversion": "1.0"}
        if event_id
        else {}
    )
    body: dict[str, object] = {
        "message": {
            "data": base64.b64encode(raw).decode(),
            "attributes": attrs,
            "messageId": uuid.uuid4().hex,
            "publishTime": "2026-11-22T10:00:00Z",
        },
        "subscription": "projects/p/subscriptions/orders-fn",
    }
    if attempt is not None:
        body["deliveryAttempt"] = attempt
    return body


def _post(url: str, body: object, *, ce_type: str = PUBLISHED) -> httpx.Response:
    headers = {
        "ce-id": uuid.uuid4().hex,
        "ce-specversion": "1.0",
        "ce-type": ce_type,
        "ce-source": "//pubsub.googleapis.com/projects/p/topics/orders",
        "content-type": "application/json",
    }
    return httpx.post(url, headers=headers, content=json.dumps(body), timeout=60)


def _rows(root: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    path = root / "scores.db" if "results" in sql else root / "dead_letters.db"
    with sqlite3.connect(path) as conn:
        return conn.execute(sql, args).fetchall()


def test_an_event_is_scored_once_even_when_pushed_twice(function: tuple[str, Path]) -> None:
    url, root = function
    event_id = f"order-{uuid.uuid4().hex}"
    body = _push_body({"amount": 10.0}, event_id=event_id)
    assert _post(url, body).status_code == 200
    assert _post(url, body).status_code == 200  # push delivers duplicates
    rows = _rows(root, "SELECT output FROM results WHERE event_id = ?", event_id)
    assert [json.loads(r[0]) for r in rows] == [{"total": 12.0}]  # type: ignore[arg-type]


def test_a_schema_violation_is_dead_lettered_and_acknowledged(function: tuple[str, Path]) -> None:
    url, root = function
    event_id = f"order-{uuid.uuid4().hex}"
    assert _post(url, _push_body({"amount": "lots"}, event_id=event_id)).status_code == 200
    rows = _rows(root, "SELECT reason, error FROM dead_letters WHERE event_id = ?", event_id)
    assert len(rows) == 1 and rows[0][0] == "schema" and "$.amount" in str(rows[0][1])
    assert not _rows(root, "SELECT 1 FROM results WHERE event_id = ?", event_id)


def test_a_transient_failure_answers_500_so_pubsub_retries(function: tuple[str, Path]) -> None:
    url, root = function
    event_id = f"order-{uuid.uuid4().hex}"
    response = _post(url, _push_body({"amount": 5.0, "flaky": True}, event_id=event_id))
    assert response.status_code == 500
    assert not _rows(root, "SELECT 1 FROM results WHERE event_id = ?", event_id)
    assert not _rows(root, "SELECT 1 FROM dead_letters WHERE event_id = ?", event_id)


def test_attempts_past_the_limit_are_dead_lettered(function: tuple[str, Path]) -> None:
    url, root = function
    event_id = f"order-{uuid.uuid4().hex}"
    # With a dead-letter policy Pub/Sub reports the attempt; the fifth failure is the last.
    body = _push_body({"amount": 5.0, "flaky": True}, event_id=event_id, attempt=5)
    assert _post(url, body).status_code == 200
    rows = _rows(root, "SELECT reason, attempts FROM dead_letters WHERE event_id = ?", event_id)
    assert rows == [("max_attempts", 5)]


def test_a_malformed_push_body_and_a_wrong_event_type_are_dead_lettered(
    function: tuple[str, Path],
) -> None:
    url, root = function
    before = len(_rows(root, "SELECT id FROM dead_letters"))
    assert _post(url, {"not": "a push body"}).status_code == 200
    assert (
        _post(
            url, _push_body({"amount": 1.0}, event_id="x1"), ce_type="com.example.other"
        ).status_code
        == 200
    )
    reasons = [r[0] for r in _rows(root, "SELECT error FROM dead_letters ORDER BY id")][before:]
    assert len(reasons) == 2
    assert "not a Pub/Sub push body" in str(reasons[0])
    assert "com.example.other" in str(reasons[1])


def test_bare_data_without_ce_id_is_keyed_by_message_id(function: tuple[str, Path]) -> None:
    url, root = function
    body = _push_body({"amount": 2.5}, event_id=None)
    assert _post(url, body).status_code == 200
    message_id = body["message"]["messageId"]  # type: ignore[index]
    assert _rows(root, "SELECT output FROM results WHERE event_id = ?", message_id)


def test_a_raw_push_body_keeps_its_delivery_attempt(function: tuple[str, Path]) -> None:
    """functions-framework drops deliveryAttempt when it converts a raw push body;
    the handler reads it from the request, so the retry limit still applies."""
    url, root = function
    event_id = f"order-{uuid.uuid4().hex}"
    body = _push_body({"amount": 5.0, "flaky": True}, event_id=event_id, attempt=5)
    response = httpx.post(url, json=body, timeout=60)  # no ce-* headers: a raw push
    assert response.status_code == 200
    rows = _rows(root, "SELECT reason, attempts FROM dead_letters WHERE event_id = ?", event_id)
    assert rows == [("max_attempts", 5)]
