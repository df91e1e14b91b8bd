"""HTTP ingest: CloudEvents in binary, structured and batch mode, checked at the door
and published onto the real embedded (SQLite) broker, then read back.

Most tests drive the ASGI app in-process through ``httpx.ASGITransport``; one runs
it under a real uvicorn server on a loopback port.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import uvicorn

from scorebus.app import App
from scorebus.app.ingest import BATCH, STRUCTURED, ingest_app
from scorebus.brokers.base import Delivery
from scorebus.brokers.memory import MemoryBroker
from scorebus.brokers.sqlite import SqliteBroker
from scorebus.errors import BrokerUnavailable
from scorebus.events import Event

T0 = "2024-05-01T12:00:00.5Z"


class Tx(msgspec.Struct):
    card: str
    amount: float


def _id() -> str:
    return uuid.uuid4().hex


def _ce(**overrides: Any) -> dict[str, Any]:
    event = {
        "specversion": "1.0",
        "id": _id(),
        "source": "/shop/checkout",
        "type": "tx.created",
        "time": T0,
        "data": {"card": "c-1", "amount": 12.5},
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not None}


def _headers(**overrides: str) -> dict[str, str]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": _id(),
        "ce-source": "/shop/checkout",
        "ce-type": "tx.created",
        "content-type": "application/json",
    }
    headers.update(overrides)
    return {k: v for k, v in headers.items() if v}


@pytest.fixture
def bus(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/bus.db"


async def _read(bus: str, topic: str) -> list[Event]:
    """Everything published to ``topic`` (the broker keeps it for the first subscription)."""
    async with SqliteBroker(bus) as broker:
        sub = await broker.subscription(topic, f"reader-{_id()[:6]}")
        got: list[Delivery] = []
        while batch := await sub.pull(100, 0.05):
            got += batch
            await sub.ack(batch)
        return [d.event for d in got]


class Door:
    """The ingest app over an open SQLite broker, driven in-process."""

    def __init__(self, client: httpx.AsyncClient, bus: str) -> None:
        self.client, self.bus = client, bus

    async def post(self, topic: str, **kwargs: Any) -> httpx.Response:
        return await self.client.post(f"/topics/{topic}/events", **kwargs)

    async def structured(self, topic: str, event: Any) -> httpx.Response:
        body = msgspec.json.encode(event)
        return await self.post(topic, content=body, headers={"content-type": STRUCTURED})

    async def batch(self, topic: str, events: Sequence[Any]) -> httpx.Response:
        body = msgspec.json.encode(events)
        return await self.post(topic, content=body, headers={"content-type": BATCH})


def _run(bus: str, scenario: Any, **options: Any) -> None:
    async def main() -> None:
        async with SqliteBroker(bus) as broker:
            app = ingest_app(broker, **options)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
                await scenario(Door(client, bus))

    asyncio.run(main())


def test_binary_mode_publishes_the_body_as_data_with_its_attributes(bus: str) -> None:
    body = b'{"card":"c-9","amount":3.0}'
    headers = _headers(
        **{"ce-time": T0, "ce-subject": "order 7", "ce-tenant": "acme%20corp", "ce-hops": "2"}
    )

    async def scenario(door: Door) -> None:
        response = await door.post("txn", content=body, headers=headers)

        assert (response.status_code, response.json()) == (202, {"ids": [headers["ce-id"]]})
        (event,) = await _read(door.bus, "txn")
        assert (event.id, event.type, event.source) == (
            headers["ce-id"],
            "tx.created",
            "/shop/checkout",
        )
        assert event.time == 1714564800.5
        assert event.subject == "order 7"
        assert event.extensions == {"tenant": "acme corp", "hops": "2"}
        assert (event.data, event.datacontenttype) == (body, "application/json")

    _run(bus, scenario)


def test_structured_mode_publishes_the_envelope_and_its_data(bus: str) -> None:
    ce = _ce(
        subject="s-1",
        traceparent="00-abc-01",
        priority=3,
        sampled=True,
        datacontenttype="application/json",
    )
    ce["dataschema"] = None  # null: the attribute is absent

    async def scenario(door: Door) -> None:
        response = await door.structured("txn", ce)

        assert (response.status_code, response.json()) == (202, {"ids": [ce["id"]]})
        (event,) = await _read(door.bus, "txn")
        assert (event.id, event.type, event.source, event.subject) == (
            ce["id"],
            "tx.created",
            "/shop/checkout",
            "s-1",
        )
        assert event.extensions == {"traceparent": "00-abc-01", "priority": "3", "sampled": "true"}
        assert msgspec.json.decode(event.data) == ce["data"]

    _run(bus, scenario)


def test_structured_data_base64_and_text_data_travel_as_bytes(bus: str) -> None:
    raw = bytes(range(256))
    binary = _ce(
        data=None,
        data_base64=base64.b64encode(raw).decode(),
        datacontenttype="application/octet-stream",
    )
    text = _ce(data="plain words", datacontenttype="text/plain")

    async def scenario(door: Door) -> None:
        assert (await door.structured("blobs", binary)).status_code == 202
        assert (await door.structured("blobs", text)).status_code == 202

        events = {e.id: e for e in await _read(door.bus, "blobs")}
        assert events[binary["id"]].data == raw
        assert (events[text["id"]].data, events[text["id"]].datacontenttype) == (
            b"plain words",
            "text/plain",
        )

    _run(bus, scenario)


def test_batch_mode_publishes_every_event_in_order(bus: str) -> None:
    events = [_ce(data={"card": f"c-{i}", "amount": float(i)}) for i in range(5)]

    async def scenario(door: Door) -> None:
        response = await door.batch("txn", events)

        assert response.status_code == 202
        assert response.json() == {"ids": [e["id"] for e in events]}
        back = await _read(door.bus, "txn")
        assert [e.id for e in back] == [e["id"] for e in events]
        assert [msgspec.json.decode(e.data)["card"] for e in back] == [f"c-{i}" for i in range(5)]

    _run(bus, scenario, topics={"txn": Tx})


def test_a_schema_violation_in_a_batch_refuses_the_whole_batch(bus: str) -> None:
    events = [_ce(), _ce(data={"card": "c-2", "amount": "lots"}), _ce()]

    async def scenario(door: Door) -> None:
        response = await door.batch("txn", events)

        assert response.status_code == 422
        body = response.json()
        assert (body["field"], body["index"]) == ("data.amount", 1)
        assert "Expected `float`, got `str`" in body["error"]
        assert await _read(door.bus, "txn") == []

    _run(bus, scenario, topics={"txn": Tx})


@pytest.mark.parametrize(
    ("mode", "change", "field"),
    [
        ("binary", {"ce-source": ""}, "source"),
        ("binary", {"ce-id": ""}, "id"),
        ("binary", {"ce-specversion": "0.3"}, "specversion"),
        ("binary", {"ce-time": "yesterday"}, "time"),
        ("binary", {"ce-Bad_Name": "x"}, "bad_name"),
        ("structured", {"type": None}, "type"),
        ("structured", {"id": ""}, "id"),
        ("structured", {"specversion": "0.3"}, "specversion"),
        ("structured", {"time": "yesterday"}, "time"),
        ("structured", {"Ext-Name": "x"}, "Ext-Name"),
        ("structured", {"ext": {"nested": 1}}, "ext"),
        ("structured", {"data_base64": "!!"}, "data_base64"),
        ("structured", {"subject": 7}, "subject"),
    ],
)
def test_a_missing_or_bad_attribute_is_a_400_naming_it(
    bus: str, mode: str, change: dict[str, Any], field: str
) -> None:
    async def scenario(door: Door) -> None:
        if mode == "binary":
            response = await door.post("txn", content=b"{}", headers=_headers(**change))
        else:
            response = await door.structured("txn", _ce(**change))

        assert response.status_code == 400, response.text
        assert (response.json()["field"], response.json()["index"]) == (field, None)
        assert await _read(door.bus, "txn") == []

    _run(bus, scenario)


def test_undecodable_bodies_are_400(bus: str) -> None:
    async def scenario(door: Door) -> None:
        structured = await door.post("txn", content=b"{nope", headers={"content-type": STRUCTURED})
        batch_of_object = await door.post("txn", content=b"{}", headers={"content-type": BATCH})
        batch_item = await door.batch("txn", [_ce(), "not an event"])
        binary = await door.post("txn", content=b"card=1", headers=_headers())
        plain_json = await door.post(
            "txn", content=b"{}", headers={"content-type": "application/json"}
        )

        assert [r.status_code for r in (structured, batch_of_object, batch_item, binary)] == [
            400
        ] * 4
        assert "not valid JSON" in structured.json()["error"]
        assert batch_item.json()["index"] == 1
        assert binary.json()["field"] == "data"
        assert (plain_json.status_code, plain_json.json()["field"]) == (400, "specversion")
        assert "ce-specversion" in plain_json.json()["error"]

    _run(bus, scenario)


def test_too_large_requests_and_data_are_413(bus: str) -> None:
    async def scenario(door: Door) -> None:
        big_body = await door.post("txn", content=b"x" * 2000, headers=_headers())
        big_data = await door.structured("txn", _ce(data={"blob": "y" * 600}))
        big_batch = await door.batch("txn", [_ce() for _ in range(4)])
        big_request = await door.batch("txn", [_ce(data={"k": "z" * 400}) for _ in range(3)])

        assert [r.status_code for r in (big_body, big_data, big_batch, big_request)] == [413] * 4
        assert big_data.json()["field"] == "data"
        assert "over the limit of 500" in big_data.json()["error"]
        assert "batch of 4 events is over 3" in big_batch.json()["error"]
        assert await _read(door.bus, "txn") == []

    _run(bus, scenario, max_bytes=500, max_request_bytes=1000, max_batch=3)


def test_unsupported_content_types_are_415(bus: str) -> None:
    async def scenario(door: Door) -> None:
        xml = await door.post(
            "txn", content=b"<e/>", headers={"content-type": "application/cloudevents+xml"}
        )
        plain = await door.post("txn", content=b"hello", headers={"content-type": "text/plain"})
        none = await door.post("txn", content=b"hello")
        text_for_schema = await door.post(
            "txn", content=b"hello", headers=_headers(**{"content-type": "text/plain"})
        )

        assert [r.status_code for r in (xml, plain, none, text_for_schema)] == [415] * 4
        assert "application/cloudevents+json" in plain.json()["error"]
        assert text_for_schema.json()["field"] == "datacontenttype"

    _run(bus, scenario, topics={"txn": Tx})


def test_restricted_topics_answer_404_for_others(bus: str) -> None:
    async def scenario(door: Door) -> None:
        unknown = await door.structured("payments", _ce())
        bad_name = await door.structured("x!", _ce())
        known = await door.structured("txn", _ce())

        assert (unknown.status_code, unknown.json()["field"]) == (404, "topic")
        assert "this endpoint takes txn" in unknown.json()["error"]
        assert bad_name.status_code == 404
        assert known.status_code == 202

    _run(bus, scenario, topics={"txn": Tx})


def test_an_app_gives_the_topics_and_schemas(bus: str) -> None:
    app = App("shop")

    @app.scorer(subscribe="txn", schema=Tx)
    def score(events: list[Tx], _: Any) -> list[dict[str, float]]:
        return [{"x": e.amount} for e in events]

    @app.on("model.trained", schema=Tx)
    def promote(event: Event, ctx: Any) -> None:
        pass

    async def scenario(door: Door) -> None:
        bad_tx = await door.structured("txn", _ce(data={"card": 1}))
        trained_bad = await door.structured("events", _ce(type="model.trained", data=[]))
        other_type = await door.structured("events", _ce(type="data.arrived", data=[]))
        unknown = await door.structured("other", _ce())

        assert (bad_tx.status_code, bad_tx.json()["field"]) == (422, "data.card")
        assert trained_bad.status_code == 422
        assert other_type.status_code == 202  # no handler of that type checks a schema
        assert unknown.status_code == 404

    _run(bus, scenario, topics=app)


def test_an_unrestricted_door_takes_any_topic_and_healthz_answers(bus: str) -> None:
    async def scenario(door: Door) -> None:
        health = await door.client.get("/healthz")
        response = await door.structured("anything.goes", _ce(data=[1, 2]))

        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        assert response.status_code == 202
        assert [msgspec.json.decode(e.data) for e in await _read(door.bus, "anything.goes")] == [
            [1, 2]
        ]

    _run(bus, scenario)


class DownBroker(MemoryBroker):
    """A broker whose server is gone: publish fails the way a real backend's does."""

    async def publish(self, topic: str, events: Sequence[Event]) -> None:
        raise BrokerUnavailable("nats://10.0.0.1:4222 refused the connection", retry_after_s=3)


def test_an_unavailable_broker_is_a_503_with_retry_after() -> None:
    async def main() -> None:
        app = ingest_app(DownBroker())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            response = await client.post(
                "/topics/txn/events",
                content=msgspec.json.encode(_ce()),
                headers={"content-type": STRUCTURED},
            )

        assert (response.status_code, response.headers["retry-after"]) == (503, "3")
        assert "refused the connection" in response.json()["error"]

    asyncio.run(main())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(bus: str) -> Iterator[str]:
    """The ingest app under a real uvicorn server, opening the broker from its URL."""
    port = _free_port()
    config = uvicorn.Config(
        ingest_app(bus, topics={"txn": Tx}),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        ws="none",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    assert not thread.is_alive()


def test_a_real_uvicorn_server_publishes_onto_the_broker(bus: str, served: str) -> None:
    binary_id = _id()
    batch = [_ce(), _ce()]

    with httpx.Client(base_url=served, timeout=5) as client:
        one = client.post(
            "/topics/txn/events",
            content=b'{"card":"c-7","amount":7.0}',
            headers=_headers(**{"ce-id": binary_id}),
        )
        many = client.post(
            "/topics/txn/events",
            content=msgspec.json.encode(batch),
            headers={"content-type": BATCH},
        )
        bad = client.post(
            "/topics/txn/events",
            content=msgspec.json.encode(_ce(data={"card": "c"})),
            headers={"content-type": STRUCTURED},
        )

    assert (one.status_code, many.status_code) == (202, 202)
    assert (bad.status_code, bad.json()["field"]) == (422, "data")
    events = asyncio.run(_read(bus, "txn"))
    assert [e.id for e in events] == [binary_id, batch[0]["id"], batch[1]["id"]]
    assert msgspec.json.decode(events[0].data) == {"card": "c-7", "amount": 7.0}
