"""An in-memory broker for fast unit tests (``memory://NAME``), same semantics as
the embedded one (leases, redelivery, attempts, dead letters, fan-out) but
nothing survives the process. Not a stand-in for integration tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from ..errors import ConfigError
from ..events import Event, encode_data
from .base import DeadLetter, Delivery, SubscriptionStats, _loop_event


@dataclass
class _Entry:
    seq: int
    event: Event
    visible_at: float = 0.0
    attempts: int = 0


class MemorySubscription:
    def __init__(self, broker: MemoryBroker, topic: str, name: str, ack_deadline_s: float) -> None:
        self._broker = broker
        self.topic = topic
        self.name = name
        self.ack_deadline_s = ack_deadline_s
        self.entries: dict[int, _Entry] = {}
        self.acked = 0

    async def pull(self, max_messages: int, timeout_s: float) -> list[Delivery]:
        give_up = time.monotonic() + timeout_s
        while True:
            now = time.time()
            out: list[Delivery] = []
            for entry in self.entries.values():
                if len(out) >= max_messages:
                    break
                if entry.visible_at <= now:
                    entry.attempts += 1
                    entry.visible_at = now + self.ack_deadline_s
                    out.append(
                        Delivery(
                            entry.event,
                            attempt=entry.attempts,
                            subscription=self,
                            handle=(entry.seq, entry.attempts),
                            deadline=entry.visible_at,
                        )
                    )
            remaining = give_up - time.monotonic()
            if out or remaining <= 0:
                return out
            await self._broker._wait(min(remaining, 0.01))

    def _current(self, d: Delivery) -> _Entry | None:
        seq, attempts = d.handle
        entry = self.entries.get(seq)
        return entry if entry is not None and entry.attempts == attempts else None

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        for d in deliveries:
            if self._current(d) is not None:
                del self.entries[d.handle[0]]
                self.acked += 1

    async def nack(self, deliveries: Sequence[Delivery], delay_s: float = 0.0) -> None:
        await self.extend(deliveries, delay_s)

    async def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        at = time.time() + max(0.0, seconds)
        for d in deliveries:
            entry = self._current(d)
            if entry is not None:
                entry.visible_at = at
                d.deadline = at

    async def dead_letter(self, items: Sequence[tuple[Delivery, str, str]]) -> None:
        for d, reason, error in items:
            entry = self._current(d)
            if entry is None:
                continue
            del self.entries[entry.seq]
            self._broker.letters.append(
                DeadLetter(
                    id=next(self._broker._ids),
                    subscription=self.name,
                    topic=self.topic,
                    event_id=d.event.id,
                    event_type=d.event.type,
                    reason=reason,
                    error=error,
                    attempts=entry.attempts,
                    dead_at=time.time(),
                    payload=bytes(d.event.data),
                )
            )
            self._broker._dead_events[self._broker.letters[-1].id] = entry.event


class MemoryBroker:
    """In-process broker. ``MemoryBroker.named(name)`` shares one instance per name."""

    _instances: ClassVar[dict[str, MemoryBroker]] = {}

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self.subs: dict[str, MemorySubscription] = {}
        self.letters: list[DeadLetter] = []
        self._dead_events: dict[int, Event] = {}
        self._unclaimed: dict[str, list[Event]] = {}
        self._ids = itertools.count(1)
        self._seq = itertools.count(1)
        self._signal = asyncio.Event()

    @classmethod
    def named(cls, name: str) -> MemoryBroker:
        if name not in cls._instances:
            cls._instances[name] = cls(f"memory://{name}")
        return cls._instances[name]

    async def __aenter__(self) -> MemoryBroker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        pass

    async def _wait(self, timeout_s: float) -> None:
        self._signal = _loop_event(self._signal)
        self._signal.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._signal.wait(), timeout_s)

    async def publish(self, topic: str, events: Sequence[Event]) -> None:
        encoded = [e.with_data(encode_data(e.data)) for e in events]
        for e in encoded:
            if not e.time:
                e.time = time.time()
        subs = [s for s in self.subs.values() if s.topic == topic]
        if not subs:
            self._unclaimed.setdefault(topic, []).extend(encoded)
        for sub in subs:
            for e in encoded:
                seq = next(self._seq)
                sub.entries[seq] = _Entry(seq, e)
        self._signal.set()

    async def subscription(
        self, topic: str, name: str, *, ack_deadline_s: float = 60.0
    ) -> MemorySubscription:
        sub = self.subs.get(name)
        if sub is not None:
            if sub.topic != topic:
                raise ConfigError(
                    f"subscription {name!r} already exists on topic {sub.topic!r}, not {topic!r}"
                )
            sub.ack_deadline_s = ack_deadline_s
            return sub
        sub = self.subs[name] = MemorySubscription(self, topic, name, ack_deadline_s)
        for e in self._unclaimed.pop(topic, []):
            seq = next(self._seq)
            sub.entries[seq] = _Entry(seq, e)
        return sub

    async def stats(self) -> list[SubscriptionStats]:
        now = time.time()
        return [
            SubscriptionStats(
                subscription=s.name,
                topic=s.topic,
                pending=sum(e.visible_at <= now for e in s.entries.values()),
                in_flight=sum(e.visible_at > now for e in s.entries.values()),
                acked=s.acked,
                dead_lettered=sum(
                    1 for dl in self.letters if dl.subscription == s.name and dl.replayed_at is None
                ),
            )
            for s in self.subs.values()
        ]

    async def dead_letters(
        self, *, subscription: str | None = None, limit: int = 100, include_replayed: bool = False
    ) -> list[DeadLetter]:
        out = [
            dl
            for dl in self.letters
            if (subscription is None or dl.subscription == subscription)
            and (include_replayed or dl.replayed_at is None)
        ]
        return out[:limit]

    async def replay(self, ids: Sequence[int]) -> int:
        done = 0
        for dl in self.letters:
            if dl.id in ids and dl.replayed_at is None:
                sub = self.subs[dl.subscription]
                seq = next(self._seq)
                sub.entries[seq] = _Entry(seq, self._dead_events[dl.id])
                dl.replayed_at = time.time()
                done += 1
        self._signal.set()
        return done
