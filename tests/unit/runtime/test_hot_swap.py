"""Hot swap with a real registry: a worker follows ``fraud@champion`` while events
stream in; a promoted version is smoke-tested and swapped in between batches, a
broken one is refused with its reason, and no event is lost or scored twice."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from scorebus.brokers.memory import MemoryBroker
from scorebus.events import Event, Schema
from scorebus.models.registry import Registry
from scorebus.runtime.config import Batch, RetryPolicy
from scorebus.runtime.scoring import ScoringLoop
from scorebus.runtime.spec import ScorerSpec
from scorebus.runtime.worker import Worker, WorkerReport
from scorebus.sinks.sqlite import SqliteResultStore

FEATURES = ("amount", "count")
X = np.array([[0, 0], [1, 0], [0, 1], [2, 3], [5, 1], [3, 4]], dtype=float)


class Tx(msgspec.Struct):
    card: str
    amount: float
    count: int


def results_fn(events: list[Tx], scores: np.ndarray) -> list[dict[str, Any]]:
    return [{"card": e.card, "score": float(s)} for e, s in zip(events, scores, strict=True)]


def _linear(a: float, b: float, *, width: int = 1, nan: bool = False) -> LinearRegression:
    y = X @ np.array([a, b])
    est = LinearRegression().fit(X, np.c_[(y,) * width] if width > 1 else y)
    if nan:
        est.coef_[:] = np.nan
    return est


def _uid() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    reg = Registry(tmp_path / "models")
    reg.register("fraud", _linear(1.0, 10.0), features=FEATURES, alias="champion")
    return reg


def _spec(model: str, events_topic: str, **extra: Any) -> ScorerSpec:
    name = f"score-{_uid()}"
    return ScorerSpec(
        name=name,
        topic=f"tx-{_uid()}",
        subscription=f"app.{name}",
        schema=Schema(Tx),
        fn=results_fn,
        model=model,
        batch=Batch(max_size=16, max_wait_ms=5),
        retry=RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.05),
        result_type=f"app.{name}.scored",
        events_topic=events_topic,
        **extra,
    )


def _worker(spec: ScorerSpec, broker: MemoryBroker, url: str, reg: Registry, poll: float) -> Worker:
    return Worker(
        [spec],
        broker=broker,
        store_url=url,
        model_threads=2,
        shutdown_grace_s=5.0,
        resolve_model=reg.load,
        resolve_version=lambda ref: reg.resolve(ref).version,
        model_poll_s=poll,
    )


def _chunk(n: int) -> list[Event]:
    return [
        Event.new("tx", {"card": f"c-{_uid()}", "amount": float(i % 7), "count": i % 3})
        for i in range(n)
    ]


async def _loop_of(worker: Worker) -> ScoringLoop:
    while not worker.scoring:
        await asyncio.sleep(0.01)
    return worker.scoring[0]


async def _stream_until(
    broker: MemoryBroker,
    topic: str,
    sent: list[Event],
    done: Any,
    *,
    timeout_s: float = 20.0,
) -> None:
    """Publish small chunks, a few ms apart, until ``done()`` (the worker never idles)."""
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "timed out waiting for the worker"
        chunk = _chunk(5)
        await broker.publish(topic, chunk)
        sent.extend(chunk)
        await asyncio.sleep(0.01)


async def _model_events(broker: MemoryBroker, topic: str, sub: str) -> list[Event]:
    s = await broker.subscription(topic, sub)
    got = await s.pull(100, 0.05)
    await s.ack(got)
    return [d.event for d in got]


async def _stored(url: str, scorer: str) -> dict[str, Any]:
    store = SqliteResultStore(url)
    try:
        return {r.event_id: r for r in await store.results(scorer=scorer, limit=100_000)}
    finally:
        await store.close()


def _check_exactly_once(stored: dict[str, Any], sent: list[Event], report: WorkerReport) -> None:
    assert set(stored) == {e.id for e in sent}
    assert report.scored == len(sent)  # nothing scored (and acked) twice
    assert (report.dead_lettered, report.retried) == (0, 0)


def _expected(version: str, tx: dict[str, Any]) -> float:
    a, b = {"1": (1.0, 10.0), "2": (2.0, 20.0), "3": (3.0, 30.0)}[version]
    return a * tx["amount"] + b * tx["count"]


def test_a_promoted_version_is_swapped_in_mid_stream(tmp_path: Path, registry: Registry) -> None:
    registry.register("fraud", _linear(2.0, 20.0), features=FEATURES)
    events_topic = f"events-{_uid()}"
    spec = _spec("fraud@champion", events_topic)
    url = f"sqlite:///{tmp_path}/scores.db"
    sent: list[Event] = []

    async def scenario() -> None:
        broker = MemoryBroker()
        watch = f"watch-{_uid()}"
        await broker.subscription(events_topic, watch)
        worker = _worker(spec, broker, url, registry, poll=0.05)
        running = asyncio.create_task(worker.run(until_idle_s=0.5))
        loop = await _loop_of(worker)
        await _stream_until(broker, spec.topic, sent, lambda: len(sent) >= 60)
        await asyncio.to_thread(registry.promote, "fraud", 2)
        await _stream_until(broker, spec.topic, sent, lambda: loop.model.version == "2")
        before_swap_done = len(sent)
        await _stream_until(broker, spec.topic, sent, lambda: len(sent) >= before_swap_done + 60)
        report = await running

        stored = await _stored(url, spec.name)
        _check_exactly_once(stored, sent, report)
        versions = [stored[e.id].model_version for e in sent]
        # In publish order: the old version, then the new one, never back.
        first_new = versions.index("2")
        assert versions == ["1"] * first_new + ["2"] * (len(sent) - first_new)
        assert 60 <= first_new <= before_swap_done
        for e in sent:
            row = stored[e.id]
            assert row.output["score"] == pytest.approx(_expected(row.model_version, e.data))
        (swapped,) = await _model_events(broker, events_topic, watch)
        assert swapped.type == "model.swapped"
        assert msgspec.json.decode(swapped.data) == {
            "scorer": spec.name,
            "role": "main",
            "model": "fraud",
            "from_version": "1",
            "to_version": "2",
            "reason": "",
        }
        assert loop.models.slots[0].swaps == 1

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("broken", "reason"),
    [
        ({"nan": True}, "NaN or infinite values for"),
        ({"width": 2}, "predict returns rows of shape (2,); the current version 1 returns one"),
    ],
    ids=["nan", "wrong-width"],
)
def test_a_broken_version_is_refused_with_its_reason_and_scoring_goes_on(
    tmp_path: Path,
    registry: Registry,
    caplog: pytest.LogCaptureFixture,
    broken: dict[str, Any],
    reason: str,
) -> None:
    registry.register("fraud", _linear(2.0, 20.0, **broken), features=FEATURES)
    registry.register("fraud", _linear(3.0, 30.0), features=FEATURES)
    events_topic = f"events-{_uid()}"
    spec = _spec("fraud@champion", events_topic)
    url = f"sqlite:///{tmp_path}/scores.db"
    sent: list[Event] = []

    async def scenario() -> None:
        broker = MemoryBroker()
        watch = f"watch-{_uid()}"
        await broker.subscription(events_topic, watch)
        worker = _worker(spec, broker, url, registry, poll=0.02)
        running = asyncio.create_task(worker.run(until_idle_s=0.5))
        loop = await _loop_of(worker)
        slot = loop.models.slots[0]
        await _stream_until(broker, spec.topic, sent, lambda: len(sent) >= 40)
        await asyncio.to_thread(registry.promote, "fraud", 2)
        await _stream_until(broker, spec.topic, sent, lambda: slot.refused == "2")
        # Several more polls see the same broken version: it is not tried again.
        at = len(sent)
        await _stream_until(broker, spec.topic, sent, lambda: len(sent) >= at + 40)
        assert loop.model.version == "1"
        (refused,) = await _model_events(broker, events_topic, watch)
        await asyncio.to_thread(registry.promote, "fraud", 3)
        await _stream_until(broker, spec.topic, sent, lambda: loop.model.version == "3")
        at = len(sent)
        await _stream_until(broker, spec.topic, sent, lambda: len(sent) >= at + 20)
        report = await running

        assert refused.type == "model.refused"
        data = msgspec.json.decode(refused.data)
        assert (data["from_version"], data["to_version"], data["model"]) == ("1", "2", "fraud")
        assert reason in data["reason"]
        warnings = [r for r in caplog.records if "refused version 2" in r.getMessage()]
        assert len(warnings) == 1
        assert warnings[0].levelno == logging.WARNING
        assert reason in warnings[0].getMessage()
        assert spec.name in warnings[0].getMessage()

        stored = await _stored(url, spec.name)
        _check_exactly_once(stored, sent, report)
        versions = [stored[e.id].model_version for e in sent]
        first_new = versions.index("3")
        assert versions == ["1"] * first_new + ["3"] * (len(sent) - first_new)
        (swapped,) = await _model_events(broker, events_topic, watch)
        assert msgspec.json.decode(swapped.data)["to_version"] == "3"

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("ref", "poll"), [("fraud@1", 0.02), ("fraud@champion", 0.0)], ids=["pinned", "poll-off"]
)
def test_a_pinned_version_or_polling_off_never_swaps(
    tmp_path: Path, registry: Registry, ref: str, poll: float
) -> None:
    registry.register("fraud", _linear(2.0, 20.0), features=FEATURES)
    spec = _spec(ref, f"events-{_uid()}")
    url = f"sqlite:///{tmp_path}/scores.db"
    sent: list[Event] = []

    async def scenario() -> None:
        broker = MemoryBroker()
        worker = _worker(spec, broker, url, registry, poll=poll)
        running = asyncio.create_task(worker.run(until_idle_s=0.3))
        await _loop_of(worker)
        await _stream_until(broker, spec.topic, sent, lambda: len(sent) >= 20)
        await asyncio.to_thread(registry.promote, "fraud", 2)
        started = time.monotonic()
        await _stream_until(broker, spec.topic, sent, lambda: time.monotonic() - started > 0.2)
        report = await running

        assert worker.followers == []
        stored = await _stored(url, spec.name)
        _check_exactly_once(stored, sent, report)
        assert {r.model_version for r in stored.values()} == {"1"}

    asyncio.run(scenario())


def test_a_shadow_alias_is_followed_like_the_main_model(tmp_path: Path, registry: Registry) -> None:
    registry.register("fraud", _linear(2.0, 20.0), features=FEATURES, alias="challenger")
    registry.register("fraud", _linear(3.0, 30.0), features=FEATURES)
    events_topic = f"events-{_uid()}"
    spec = _spec("fraud@champion", events_topic, shadow="fraud@challenger")
    url = f"sqlite:///{tmp_path}/scores.db"
    sent: list[Event] = []

    async def scenario() -> None:
        broker = MemoryBroker()
        worker = _worker(spec, broker, url, registry, poll=0.02)
        running = asyncio.create_task(worker.run(until_idle_s=0.5))
        loop = await _loop_of(worker)
        shadow = loop.models.challenger
        assert shadow is not None
        await _stream_until(broker, spec.topic, sent, lambda: len(sent) >= 30)
        await asyncio.to_thread(registry.set_alias, "fraud", "challenger", 3)
        await _stream_until(broker, spec.topic, sent, lambda: shadow.version == "3")
        at = len(sent)
        await _stream_until(broker, spec.topic, sent, lambda: len(sent) >= at + 30)
        report = await running

        main = await _stored(url, spec.name)
        shadows = await _stored(url, f"{spec.name}.shadow")
        _check_exactly_once(main, sent, report)
        assert set(shadows) == set(main)
        assert {r.model_version for r in main.values()} == {"1"}
        versions = [shadows[e.id].model_version for e in sent]
        first_new = versions.index("3")
        assert versions == ["2"] * first_new + ["3"] * (len(sent) - first_new)
        for e in sent:
            row = shadows[e.id]
            assert row.output["score"] == pytest.approx(_expected(row.model_version, e.data))
        assert loop.models.main is not None and loop.models.main.swaps == 0

    asyncio.run(scenario())
