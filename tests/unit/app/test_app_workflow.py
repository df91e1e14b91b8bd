"""Workflow handlers (``@app.on``) run by the worker over the in-memory broker."""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path
from typing import Any

import msgspec

from scorebus.app import App
from scorebus.brokers.memory import MemoryBroker
from scorebus.events import Event
from scorebus.runtime.config import RetryPolicy
from scorebus.runtime.spec import HandlerContext
from scorebus.runtime.worker import Worker, WorkerReport

FAST_RETRY = RetryPolicy(max_attempts=2, initial_backoff_s=0.01, max_backoff_s=0.02)


def _app(**kwargs: Any) -> App:
    uid = uuid.uuid4().hex[:8]
    return App(f"wf-{uid}", events_topic=f"events-{uid}", **kwargs)


async def _run(app: App, broker: MemoryBroker, tmp_path: Path, *first: Event) -> WorkerReport:
    for topic, subscription in app.subscriptions():
        await broker.subscription(topic, subscription)
    await broker.publish(app.events_topic, list(first))
    worker = Worker(
        app.scorers,
        app.handlers,
        broker=broker,
        store_url=f"sqlite:///{tmp_path}/scores.db",
        startup=app.startup,
        model_threads=2,
        shutdown_grace_s=5.0,
    )
    return await worker.run(until_idle_s=0.3)


def test_a_chain_of_handlers_runs_and_carries_causation(tmp_path: Path) -> None:
    app = _app()
    seen: dict[str, Event] = {}
    lock = threading.Lock()

    @app.on("order.placed")
    def place(event: Event, ctx: HandlerContext) -> None:
        with lock:
            seen[event.type] = event
        ctx.publish("order.paid", {"order": event.data["order"], "paid": True})

    @app.on("order.paid")
    async def pay(event: Event, ctx: HandlerContext) -> None:
        seen[event.type] = event
        ctx.publish("order.shipped", {"order": event.data["order"]})

    @app.on("order.shipped")
    def ship(event: Event, ctx: HandlerContext) -> None:
        with lock:
            seen[event.type] = event

    first = Event.new("order.placed", {"order": 17})

    async def scenario() -> None:
        broker = MemoryBroker()
        report = await _run(app, broker, tmp_path, first)

        assert set(seen) == {"order.placed", "order.paid", "order.shipped"}
        placed, paid, shipped = seen["order.placed"], seen["order.paid"], seen["order.shipped"]
        assert placed.id == first.id
        assert paid.causation_id == placed.id
        assert shipped.causation_id == paid.id
        assert (placed.hops, paid.hops, shipped.hops) == (0, 1, 2)
        assert paid.data == {"order": 17, "paid": True}
        assert shipped.data == {"order": 17}
        assert report.handled == 3
        assert (report.dead_lettered, report.retried) == (0, 0)
        for stats in await broker.stats():
            # Every handler's subscription saw all three events and settled them.
            assert (stats.pending, stats.in_flight, stats.acked) == (0, 0, 3)

    asyncio.run(scenario())


def test_a_self_loop_is_stopped_at_max_hops(tmp_path: Path) -> None:
    app = _app(max_hops=5)
    calls: list[int] = []

    @app.on("tick")
    def again(event: Event, ctx: HandlerContext) -> None:
        calls.append(event.hops)
        ctx.publish("tick", {"n": event.data["n"] + 1})

    async def scenario() -> None:
        broker = MemoryBroker()
        report = await _run(app, broker, tmp_path, Event.new("tick", {"n": 0}))

        assert calls == [0, 1, 2, 3, 4]
        (letter,) = await broker.dead_letters()
        assert letter.reason == "hop_limit"
        assert "max_hops=5" in letter.error
        assert letter.attempts == 1
        assert msgspec.json.decode(letter.payload) == {"n": 5}
        assert report.handled == 5
        assert report.dead_lettered == 1

    asyncio.run(scenario())


def test_a_redelivered_cause_republishes_the_same_ids(tmp_path: Path) -> None:
    app = _app()
    published: list[str] = []
    attempts: list[int] = []

    @app.on("job.start", retry=RetryPolicy(max_attempts=3, initial_backoff_s=0.01))
    def start(event: Event, ctx: HandlerContext) -> None:
        published.append(ctx.publish("job.next", {"k": 1}).id)
        attempts.append(len(attempts))
        if len(attempts) == 1:
            raise RuntimeError("flaky downstream")

    async def scenario() -> None:
        broker = MemoryBroker()
        report = await _run(app, broker, tmp_path, Event.new("job.start", {}))

        assert len(published) == 2
        assert published[0] == published[1]
        assert report.handled == 1
        assert report.retried == 1

    asyncio.run(scenario())


def test_a_failing_handler_is_retried_then_dead_lettered(tmp_path: Path) -> None:
    app = _app()
    calls: list[int] = []

    @app.on("job.run", retry=FAST_RETRY)
    def run(event: Event, ctx: HandlerContext) -> None:
        calls.append(1)
        raise RuntimeError("downstream is down")

    async def scenario() -> None:
        broker = MemoryBroker()
        event = Event.new("job.run", {"job": 1})
        report = await _run(app, broker, tmp_path, event)

        (letter,) = await broker.dead_letters()
        assert letter.event_id == event.id
        assert letter.reason == "max_attempts"
        assert letter.attempts == FAST_RETRY.max_attempts
        assert "downstream is down" in letter.error
        assert len(calls) == FAST_RETRY.max_attempts
        assert (report.handled, report.retried, report.dead_lettered) == (0, 1, 1)

    asyncio.run(scenario())


class Job(msgspec.Struct):
    job: int


def test_a_handler_event_that_fails_its_schema_is_dead_lettered_at_once(tmp_path: Path) -> None:
    app = _app()
    got: list[Job] = []

    @app.on("job.typed", schema=Job, retry=FAST_RETRY)
    def typed(event: Event, ctx: HandlerContext) -> None:
        got.append(event.data)

    async def scenario() -> None:
        broker = MemoryBroker()
        good, bad = Event.new("job.typed", {"job": 1}), Event.new("job.typed", {"job": "one"})
        report = await _run(app, broker, tmp_path, good, bad)

        assert got == [Job(1)]
        (letter,) = await broker.dead_letters()
        assert (letter.event_id, letter.reason, letter.attempts) == (bad.id, "schema", 1)
        assert letter.error.startswith("$.job:")
        assert report.retried == 0

    asyncio.run(scenario())
