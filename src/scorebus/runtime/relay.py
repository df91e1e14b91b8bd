"""The outbox relay: publishes committed result events, then forgets them.

Runs beside the scoring loops of a worker whose scorers both store and
publish. Each relay claims the rows it publishes (several worker processes
share one store), and a row is deleted only after the broker accepted the
publish; a crash in between republishes the same event id, which the broker's publish
dedupe (embedded, NATS) or the consumer's idempotent sink drops.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from ..brokers.base import Broker
from ..errors import TransientError
from ..events import Event
from ..sinks.base import ResultStore

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(self, store: ResultStore, broker: Broker, *, batch: int = 1000) -> None:
        self.store = store
        self.broker = broker
        self.batch = batch
        self.relayed = 0

    async def relay_once(self) -> int:
        """Publish one batch of pending outbox events; returns how many went out."""
        # Claimed: the relays of several worker processes never publish the same row.
        async with self.store.outbox_batch(self.batch) as pending:
            if not pending:
                return 0
            by_topic: dict[str, list[Event]] = defaultdict(list)
            for _, item in pending:
                by_topic[item.topic].append(item.event)
            for topic, events in by_topic.items():
                await self.broker.publish(topic, events)
        self.relayed += len(pending)
        return len(pending)

    async def run(self, stop: asyncio.Event, *, interval_s: float = 0.05) -> None:
        """Relay until ``stop`` is set, then empty the outbox once more."""
        while not stop.is_set():
            try:
                if await self.relay_once() == 0:
                    await asyncio.sleep(interval_s)
            except TransientError as exc:
                log.warning("outbox relay: %s; retrying in 1 s", exc)
                await asyncio.sleep(1.0)
        while await self.relay_once():
            pass
