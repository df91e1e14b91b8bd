"""The worker end to end over the in-memory broker and a real SQLite results store:
exactly-once results, dead letters for bad events, retries, the outbox, shutdown."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from scorebus.brokers.base import Delivery, Subscription, SubscriptionStats
from scorebus.brokers.memory import MemoryBroker
from scorebus.errors import ModelUnavailable
from scorebus.events import Event, Schema
from scorebus.models.base import Signature
from scorebus.runtime.config import Batch, RetryPolicy
from scorebus.runtime.spec import ScorerSpec
from scorebus.runtime.worker import Worker, WorkerReport
from scorebus.sinks.sqlite import SqliteResultStore

FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.05)


class Tx(msgspec.Struct):
    card: str
    amount: float
    count: int


class TinyModel:
    """A real (if small) model: score = amount / 100 + count."""

    name = "tiny"
    version = "3"
    signature = Signature(inputs=("amount", "count"), outputs=("score",))

    def __init__(self, *, fail_first: int = 0, delay_s: float = 0.0) -> None:
        self.fail_first = fail_first
        self.delay_s = delay_s
        self.loads = 0
        self.calls = 0
        self.rows = 0
        self._lock = threading.Lock()

    def load(self) -> None:
        self.loads += 1

    def predict(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            self.calls += 1
            call = self.calls
            self.rows += len(batch)
        if self.delay_s:
            time.sleep(self.delay_s)
        if call <= self.fail_first:
            raise ModelUnavailable(f"model endpoint down (call {call})")
        return batch[:, 0] / 100 + batch[:, 1]


def expected_score(tx: Tx) -> float:
    return float(np.float32(tx.amount) / np.float32(100) + np.float32(tx.count))


def results_fn(events: list[Tx], scores: np.ndarray) -> list[dict[str, Any]]:
    return [{"card": e.card, "score": float(s)} for e, s in zip(events, scores, strict=True)]


def _uid() -> str:
    return uuid.uuid4().hex[:8]


def _spec(model: Any = None, **overrides: Any) -> ScorerSpec:
    name = overrides.pop("name", f"score-{_uid()}")
    fields: dict[str, Any] = {
        "name": name,
        "topic": f"tx-{_uid()}",
        "subscription": f"app.{name}",
        "schema": Schema(Tx, max_bytes=256),
        "fn": results_fn,
        "model": model,
        "batch": Batch(max_size=64, max_wait_ms=20),
        "retry": FAST_RETRY,
        "result_type": f"app.{name}.scored",
    }
    fields.update(overrides)
    return ScorerSpec(**fields)


def _txs(n: int, prefix: str = "card") -> list[Event]:
    return [
        Event.new("tx", {"card": f"{prefix}-{i}", "amount": 10.0 * i, "count": i % 3})
        for i in range(n)
    ]


def _store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/scores-{_uid()}.db"


async def _run(
    scorers: Sequence[ScorerSpec],
    broker: MemoryBroker,
    store_url: str,
    *,
    until_idle_s: float | None = 0.3,
    during: Callable[[Worker], Any] | None = None,
    resolve_model: Callable[[str], Any] | None = None,
) -> WorkerReport:
    worker = Worker(
        scorers,
        broker=broker,
        store_url=store_url,
        model_threads=2,
        shutdown_grace_s=5.0,
        resolve_model=resolve_model,
    )
    if during is not None:
        during(worker)
    return await worker.run(until_idle_s=until_idle_s)


async def _stored(store_url: str, scorer: str) -> dict[str, Any]:
    store = SqliteResultStore(store_url)
    try:
        return {r.event_id: r for r in await store.results(scorer=scorer, limit=100_000)}
    finally:
        await store.close()


async def _stats(broker: MemoryBroker, subscription: str) -> SubscriptionStats:
    return {s.subscription: s for s in await broker.stats()}[subscription]


async def _drain(sub: Subscription) -> list[Delivery]:
    got: list[Delivery] = []
    while batch := await sub.pull(1000, 0.05):
        got += batch
        await sub.ack(batch)
    return got


def test_every_valid_event_is_scored_exactly_once_with_its_model(tmp_path: Path) -> None:
    model = TinyModel()
    spec = _spec(model)
    url = _store_url(tmp_path)
    early, late = _txs(40, "early"), _txs(25, "late")

    async def scenario() -> None:
        broker = MemoryBroker()
        await broker.publish(spec.topic, early)
        # Redeliveries and publisher retries: the same event ids again.
        await broker.publish(spec.topic, early[:5])

        async def publish_late() -> None:
            await asyncio.sleep(0.05)
            await broker.publish(spec.topic, late)

        publisher = asyncio.create_task(publish_late())
        report = await _run([spec], broker, url)
        await publisher

        stored = await _stored(url, spec.name)
        events = {e.id: msgspec.convert(e.data, Tx) for e in early + late}
        assert set(stored) == set(events)
        for event_id, row in stored.items():
            tx = events[event_id]
            assert (row.model, row.model_version) == ("tiny", "3")
            assert row.output["card"] == tx.card
            assert row.output["score"] == pytest.approx(expected_score(tx))
        assert model.loads == 1
        assert report.scored == 70
        assert (report.dead_lettered, report.retried) == (0, 0)
        stats = await _stats(broker, spec.subscription)
        assert (stats.pending, stats.in_flight, stats.acked, stats.dead_lettered) == (0, 0, 70, 0)

    asyncio.run(scenario())


def test_bad_events_are_dead_lettered_at_once_with_their_reasons(tmp_path: Path) -> None:
    model = TinyModel()
    spec = _spec(model)
    url = _store_url(tmp_path)
    good = _txs(6)
    bad = {
        "undecodable": Event.new("tx", b"card=c1&amount=3"),
        "wrong_type": Event.new("tx", {"card": "c2", "amount": "lots", "count": 1}),
        "missing": Event.new("tx", {"card": "c3", "count": 1}),
        "too_large": Event.new("tx", {"card": "x" * 300, "amount": 1.0, "count": 1}),
    }

    async def scenario() -> None:
        broker = MemoryBroker()
        await broker.publish(spec.topic, [*good[:3], *bad.values(), *good[3:]])

        report = await _run([spec], broker, url)

        letters = {
            dl.event_id: dl for dl in await broker.dead_letters(subscription=spec.subscription)
        }
        by_case = {case: letters[e.id] for case, e in bad.items()}
        assert {case: dl.reason for case, dl in by_case.items()} == {
            "undecodable": "undecodable",
            "wrong_type": "schema",
            "missing": "schema",
            "too_large": "too_large",
        }
        assert by_case["wrong_type"].error.startswith("$.amount:")
        assert "amount" in by_case["missing"].error
        assert "over the limit of 256" in by_case["too_large"].error
        assert by_case["undecodable"].payload == b"card=c1&amount=3"
        assert all(dl.attempts == 1 for dl in letters.values())
        assert len(letters) == 4
        assert report.retried == 0
        assert report.dead_lettered == 4
        assert set(await _stored(url, spec.name)) == {e.id for e in good}
        assert model.rows == 6

    asyncio.run(scenario())


def test_a_model_that_recovers_is_retried_with_backoff(tmp_path: Path) -> None:
    model = TinyModel(fail_first=2)
    spec = _spec(model)
    url = _store_url(tmp_path)
    events = _txs(10)

    async def scenario() -> None:
        broker = MemoryBroker()
        await broker.publish(spec.topic, events)

        report = await _run([spec], broker, url)

        assert set(await _stored(url, spec.name)) == {e.id for e in events}
        assert model.calls == 3
        assert report.scored == 10
        assert report.retried == 20
        assert report.per_loop[spec.name] == {"scored": 10, "dead_lettered": 0, "retried": 20}
        assert await broker.dead_letters() == []
        assert (await _stats(broker, spec.subscription)).acked == 10

    asyncio.run(scenario())


def test_a_model_that_stays_down_is_dead_lettered_after_max_attempts(tmp_path: Path) -> None:
    model = TinyModel(fail_first=1_000)
    spec = _spec(model)
    url = _store_url(tmp_path)
    events = _txs(5)

    async def scenario() -> None:
        broker = MemoryBroker()
        await broker.publish(spec.topic, events)

        report = await _run([spec], broker, url)

        letters = await broker.dead_letters(subscription=spec.subscription)
        assert {dl.event_id for dl in letters} == {e.id for e in events}
        assert all(dl.reason == "max_attempts" for dl in letters)
        assert all(dl.attempts == FAST_RETRY.max_attempts for dl in letters)
        assert all("model_unavailable" in dl.error for dl in letters)
        assert model.calls == FAST_RETRY.max_attempts
        assert (report.scored, report.retried, report.dead_lettered) == (0, 10, 5)
        assert await _stored(url, spec.name) == {}

    asyncio.run(scenario())


def test_one_failing_event_does_not_sink_its_batch(tmp_path: Path) -> None:
    def picky(events: list[Tx], scores: np.ndarray) -> list[dict[str, Any]]:
        if any(e.card == "poison" for e in events):
            raise ValueError("cannot score the poison card")
        return results_fn(events, scores)

    spec = _spec(TinyModel(), fn=picky)
    url = _store_url(tmp_path)
    good = _txs(9)
    poison = Event.new("tx", {"card": "poison", "amount": 1.0, "count": 1})

    async def scenario() -> None:
        broker = MemoryBroker()
        await broker.publish(spec.topic, [*good[:4], poison, *good[4:]])

        report = await _run([spec], broker, url)

        assert set(await _stored(url, spec.name)) == {e.id for e in good}
        (letter,) = await broker.dead_letters(subscription=spec.subscription)
        assert letter.event_id == poison.id
        assert letter.reason == "max_attempts"
        assert letter.attempts == FAST_RETRY.max_attempts
        assert "ValueError: cannot score the poison card" in letter.error
        assert report.scored == 9
        assert report.dead_lettered == 1

    asyncio.run(scenario())


def test_stored_and_published_results_go_through_the_outbox_once(tmp_path: Path) -> None:
    url = _store_url(tmp_path)
    out_topic = f"scores-{_uid()}"
    spec = _spec(TinyModel(), sink=url, publish=out_topic)
    events = _txs(30)

    async def scenario() -> None:
        broker = MemoryBroker()
        reader = await broker.subscription(out_topic, f"reader-{_uid()}")
        await broker.publish(spec.topic, events)

        report = await _run([spec], broker, url)

        published = await _drain(reader)
        assert len(published) == 30
        by_cause = {d.event.causation_id: d.event for d in published}
        assert set(by_cause) == {e.id for e in events}
        for source in events:
            out = by_cause[source.id]
            body = msgspec.json.decode(out.data)
            assert out.type == spec.result_type
            assert out.hops == 1
            assert body["event_id"] == source.id
            assert (body["model"], body["model_version"]) == ("tiny", "3")
            assert body["result"]["card"] == source.data["card"]
        assert report.relayed == 30
        assert set(await _stored(url, spec.name)) == {e.id for e in events}
        store = SqliteResultStore(url)
        try:
            assert await store.outbox_size() == 0
        finally:
            await store.close()

    asyncio.run(scenario())


def test_a_redelivered_event_is_published_once(tmp_path: Path) -> None:
    url = _store_url(tmp_path)
    out_topic = f"scores-{_uid()}"
    spec = _spec(TinyModel(), publish=out_topic)  # stored in the worker's store
    events = _txs(20)

    async def scenario() -> None:
        broker = MemoryBroker()
        reader = await broker.subscription(out_topic, f"reader-{_uid()}")
        # The copies land in the same batch as their originals.
        await broker.publish(spec.topic, [*events, *events[:5]])
        await _run([spec], broker, url)
        # ...and in a later batch, after the originals were committed.
        await broker.publish(spec.topic, events[5:8])
        await _run([spec], broker, url)

        published = await _drain(reader)
        causes = [d.event.causation_id for d in published]
        assert sorted(causes, key=str) == sorted((e.id for e in events), key=str)
        assert len(await _stored(url, spec.name)) == 20

    asyncio.run(scenario())


def test_a_publish_only_scorer_publishes_directly(tmp_path: Path) -> None:
    url = _store_url(tmp_path)
    out_topic = f"scores-{_uid()}"
    spec = _spec(TinyModel(), sink=False, publish=out_topic)
    events = _txs(12)

    async def scenario() -> None:
        broker = MemoryBroker()
        reader = await broker.subscription(out_topic, f"reader-{_uid()}")
        await broker.publish(spec.topic, events)

        report = await _run([spec], broker, url)

        published = await _drain(reader)
        assert sorted(d.event.causation_id or "" for d in published) == sorted(e.id for e in events)
        assert report.scored == 12
        assert report.relayed == 0
        assert not Path(url.removeprefix("sqlite:///")).exists()

    asyncio.run(scenario())


def test_a_model_reference_is_resolved_once_and_a_model_less_scorer_works(
    tmp_path: Path,
) -> None:
    model = TinyModel()
    asked: list[str] = []

    def resolve(ref: str) -> TinyModel:
        asked.append(ref)
        return model

    with_model = _spec("tiny@champion")
    without = _spec(None, topic=with_model.topic, fn=lambda events, _: [{"n": 1} for _ in events])
    url = _store_url(tmp_path)
    events = _txs(4)

    async def scenario() -> None:
        broker = MemoryBroker()
        await broker.publish(with_model.topic, events)
        # Both subscriptions exist before the second publish, so both see these.
        await broker.subscription(with_model.topic, with_model.subscription)
        await broker.subscription(without.topic, without.subscription)
        await broker.publish(with_model.topic, _txs(2))

        await _run([with_model, without], broker, url, resolve_model=resolve)

        assert asked == ["tiny@champion"]
        scored = await _stored(url, with_model.name)
        plain = await _stored(url, without.name)
        assert {(r.model, r.model_version) for r in scored.values()} == {("tiny", "3")}
        assert {(r.model, r.model_version) for r in plain.values()} == {("-", "-")}
        assert all(r.output == {"n": 1} for r in plain.values())
        assert len(scored) == 6
        assert len(plain) == 2

    asyncio.run(scenario())


def test_graceful_stop_loses_nothing(tmp_path: Path) -> None:
    model = TinyModel(delay_s=0.03)
    spec = _spec(model, batch=Batch(max_size=10, max_wait_ms=5))
    url = _store_url(tmp_path)
    events = _txs(300)

    async def scenario() -> None:
        broker = MemoryBroker()
        await broker.publish(spec.topic, events)

        def stop_soon(worker: Worker) -> None:
            asyncio.get_running_loop().call_later(0.15, worker.request_stop)

        started = time.monotonic()
        report = await _run([spec], broker, url, until_idle_s=None, during=stop_soon)
        took = time.monotonic() - started

        stored = await _stored(url, spec.name)
        stats = await _stats(broker, spec.subscription)
        assert 0 < len(stored) < 300
        assert report.scored == len(stored) == stats.acked
        assert stats.acked + stats.pending + stats.in_flight == 300
        assert stats.dead_lettered == 0
        assert took < 3.0

    asyncio.run(scenario())


def test_graceful_stop_relays_what_the_last_batches_committed(tmp_path: Path) -> None:
    url = _store_url(tmp_path)
    out_topic = f"scores-{_uid()}"
    model = TinyModel(delay_s=0.05)
    spec = _spec(model, sink=url, publish=out_topic, batch=Batch(max_size=10, max_wait_ms=5))
    events = _txs(200)

    async def scenario() -> None:
        broker = MemoryBroker()
        reader = await broker.subscription(out_topic, f"reader-{_uid()}")
        await broker.publish(spec.topic, events)

        def stop_soon(worker: Worker) -> None:
            asyncio.get_running_loop().call_later(0.12, worker.request_stop)

        report = await _run([spec], broker, url, until_idle_s=None, during=stop_soon)

        stored = await _stored(url, spec.name)
        published = await _drain(reader)
        store = SqliteResultStore(url)
        try:
            left_in_outbox = await store.outbox_size()
        finally:
            await store.close()
        assert 0 < len(stored) < 200
        assert left_in_outbox == 0
        assert {d.event.causation_id for d in published} == set(stored)
        assert report.relayed == len(stored)

    asyncio.run(scenario())


def test_until_idle_stops_an_idle_worker(tmp_path: Path) -> None:
    spec = _spec(TinyModel())

    async def scenario() -> None:
        started = time.monotonic()
        report = await _run([spec], MemoryBroker(), _store_url(tmp_path), until_idle_s=0.2)

        assert 0.15 <= time.monotonic() - started < 2.0
        assert report.scored == 0

    asyncio.run(scenario())
