"""The push broker: outcomes of settlement, and dead letters that leave the instance."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from scorebus.brokers.dlq_store import DeadLetterStore
from scorebus.brokers.memory import MemoryBroker
from scorebus.brokers.push import PushBroker
from scorebus.events import Event


def test_settlements_answer_the_pushes_and_dead_letters_are_published(tmp_path: Path) -> None:
    async def scenario() -> None:
        out = MemoryBroker()
        letters = await out.subscription("scorer-sub.dead-letter", "dlq-reader")
        push = PushBroker(dlq=DeadLetterStore(tmp_path / "dlq.db"), publish_to=out)
        sub = await push.subscription("orders", "scorer-sub")
        events = [Event.new("order", {"n": i}) for i in range(3)]
        waiting = [asyncio.create_task(push.deliver("scorer-sub", e, attempt=2)) for e in events]
        got = await sub.pull(10, 1.0)
        assert [d.event.id for d in got] == [e.id for e in events]
        await sub.ack([got[0]])
        await sub.nack([got[1]], 5.0)
        await sub.dead_letter([(got[2], "schema", "$.n: Expected `str`")])
        assert await asyncio.gather(*waiting) == ["ok", "retry", "dead"]

        published = await letters.pull(10, 1.0)
        assert [d.event.id for d in published] == [events[2].id]
        ext = published[0].event.extensions
        assert ext["deadletterreason"] == "schema" and ext["deadletterattempts"] == "2"
        kept = await push.dead_letters()
        assert [(d.event_id, d.reason) for d in kept] == [(events[2].id, "schema")]
        await push.close()

    asyncio.run(scenario())


def test_a_dead_letter_that_cannot_leave_the_instance_is_retried(tmp_path: Path) -> None:
    class Down(MemoryBroker):
        async def publish(self, topic: str, events: object) -> None:  # type: ignore[override]
            raise ConnectionError("pubsub unreachable")

    async def scenario() -> None:
        push = PushBroker(dlq=DeadLetterStore(tmp_path / "dlq.db"), publish_to=Down())
        sub = await push.subscription("orders", "scorer-sub")
        waiting = asyncio.create_task(push.deliver("scorer-sub", Event.new("order", {})))
        (delivery,) = await sub.pull(1, 1.0)
        with pytest.raises(ConnectionError):
            await sub.dead_letter([(delivery, "schema", "bad")])
        assert await waiting == "retry"
        await push.close()

    asyncio.run(scenario())
