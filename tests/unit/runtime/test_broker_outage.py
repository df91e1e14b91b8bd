"""A broker that goes away mid-run: the worker backs off and carries on, losing nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tests.unit.runtime.test_worker_scoring import TinyModel, _run, _spec, _store_url, _stored, _txs

from scorebus.brokers.memory import MemoryBroker, MemorySubscription
from scorebus.errors import BrokerUnavailable, ConfigError


class FlakyBroker(MemoryBroker):
    """Pulls fail ``pull_failures`` times and the first ack fails once."""

    def __init__(self, pull_failures: int) -> None:
        super().__init__()
        self.pull_failures = pull_failures
        self.ack_failures = 1

    async def subscription(self, topic: str, name: str, **kw: Any) -> MemorySubscription:
        sub = await super().subscription(topic, name, **kw)
        broker = self
        pull, ack = sub.pull, sub.ack

        async def flaky_pull(n: int, timeout_s: float) -> Any:
            if broker.pull_failures > 0:
                broker.pull_failures -= 1
                raise BrokerUnavailable("memory:// went away")
            return await pull(n, timeout_s)

        async def flaky_ack(deliveries: Any) -> None:
            if broker.ack_failures > 0:
                broker.ack_failures -= 1
                raise BrokerUnavailable("memory:// went away during ack")
            await ack(deliveries)

        sub.pull = flaky_pull  # type: ignore[method-assign]
        sub.ack = flaky_ack  # type: ignore[method-assign]
        return sub


def test_worker_rides_out_pull_and_ack_failures(tmp_path: Path) -> None:
    url = _store_url(tmp_path)
    spec = _spec(TinyModel(), ack_deadline_s=0.5)
    events = _txs(50)

    async def scenario() -> None:
        broker = FlakyBroker(pull_failures=2)
        sub = await broker.subscription(spec.topic, spec.subscription, ack_deadline_s=0.5)
        await broker.publish(spec.topic, events)
        await _run([spec], broker, url, until_idle_s=1.5)
        # The batch whose ack failed was redelivered after its lease and acked then.
        assert broker.pull_failures == 0 and broker.ack_failures == 0
        stats = {s.subscription: s for s in await broker.stats()}[sub.name]
        assert (stats.pending, stats.in_flight) == (0, 0)
        stored = await _stored(url, spec.name)
        assert set(stored) == {e.id for e in events}

    asyncio.run(scenario())


class MisconfiguredSink:
    url = "broken://"

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def write(self, results: Any, outbox: Any = ()) -> int:
        raise ConfigError("table scores.results does not exist: create it or grant CREATE")


def test_a_misconfigured_sink_stops_the_worker_without_dead_lettering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scorebus.runtime import worker as worker_module

    monkeypatch.setattr(worker_module, "open_sink", lambda url: MisconfiguredSink())
    spec = _spec(TinyModel())
    events = _txs(10)

    async def scenario() -> None:
        broker = MemoryBroker()
        sub = await broker.subscription(spec.topic, spec.subscription)
        await broker.publish(spec.topic, events)
        with pytest.raises(ConfigError, match="does not exist"):
            await _run([spec], broker, _store_url(tmp_path), until_idle_s=5.0)
        stats = {s.subscription: s for s in await broker.stats()}[sub.name]
        assert stats.dead_lettered == 0
        assert stats.pending + stats.in_flight == len(events)  # kept for after the fix

    asyncio.run(scenario())


def test_leases_are_extended_while_a_slow_batch_is_scored(tmp_path: Path) -> None:
    # Leases of 0.6 s, a model taking 1.5 s: without extension every event would
    # be handed out again while the first batch is still being scored.
    model = TinyModel(delay_s=1.5)
    spec = _spec(model, ack_deadline_s=0.6)
    events = _txs(20)

    async def scenario() -> None:
        broker = MemoryBroker()
        sub = await broker.subscription(spec.topic, spec.subscription, ack_deadline_s=0.6)
        await broker.publish(spec.topic, events)
        await _run([spec], broker, _store_url(tmp_path), until_idle_s=0.5)
        stats = {s.subscription: s for s in await broker.stats()}[sub.name]
        assert (stats.acked, stats.pending, stats.in_flight) == (20, 0, 0)
        assert model.rows == 20, "no event was scored twice"

    asyncio.run(scenario())
