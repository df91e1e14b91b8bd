"""The broker contract: ``Broker`` publishes and hands out ``Subscription``s, a
``Subscription`` pulls ``Delivery``s, and every delivery is settled exactly once
by ack, nack (redeliver after a delay), or dead-letter.

Acks, nacks and extensions are batch calls on the subscription because every
real broker settles in batches (Pub/Sub batched acks, XACK with many ids, one
SQLite transaction); ``Delivery.ack()`` is the one-message convenience.

Example, consuming by hand::

    async with open_broker("sqlite:///.scorebus/bus.db") as broker:
        sub = await broker.subscription("transactions", "fraud")
        async for delivery in iterate(sub):
            print(delivery.event.id, delivery.attempt)
            await delivery.ack()
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol, runtime_checkable

import msgspec

from ..events import Event


class Delivery:
    """One event handed to one consumer, with its lease.

    Attributes:
        event: the envelope; ``event.data`` is the raw payload (bytes).
        attempt: 1 on the first delivery, +1 on each redelivery.
        size: payload size in bytes (for the in-flight byte cap).
        deadline: wall-clock time (``time.time()``) at which the lease runs out,
            or ``None`` where the broker extends leases itself.
        handle: the broker's own reference (row id, ack id, stream id).
    """

    __slots__ = ("attempt", "deadline", "event", "handle", "size", "subscription")

    def __init__(
        self,
        event: Event,
        *,
        attempt: int,
        handle: Any,
        subscription: Subscription,
        size: int | None = None,
        deadline: float | None = None,
    ) -> None:
        self.event = event
        self.attempt = attempt
        self.handle = handle
        self.subscription = subscription
        self.size = size if size is not None else len(event.data or b"")
        self.deadline = deadline

    def remaining_s(self, now: float | None = None) -> float:
        """Seconds left on the lease (infinite when the broker manages leases)."""
        if self.deadline is None:
            return float("inf")
        return self.deadline - (time.time() if now is None else now)

    async def ack(self) -> None:
        await self.subscription.ack([self])

    async def nack(self, delay_s: float = 0.0) -> None:
        await self.subscription.nack([self], delay_s)

    async def extend(self, seconds: float) -> None:
        await self.subscription.extend([self], seconds)

    def __repr__(self) -> str:
        return f"Delivery(id={self.event.id!r}, attempt={self.attempt})"


class DeadLetter(msgspec.Struct, kw_only=True):
    """A dead-lettered event with why it was given up on."""

    id: int
    subscription: str
    topic: str
    event_id: str
    event_type: str
    reason: str
    error: str
    attempts: int
    dead_at: float
    payload: bytes
    attributes: dict[str, str] = msgspec.field(default_factory=dict)
    replayed_at: float | None = None


class SubscriptionStats(msgspec.Struct, kw_only=True):
    """What a broker can tell about one subscription.

    ``pending`` is ``None`` where the broker cannot count waiting messages
    (Pub/Sub exposes that only through Cloud Monitoring).
    """

    subscription: str
    topic: str
    pending: int | None
    in_flight: int
    acked: int
    dead_lettered: int

    UNCLAIMED = "(unclaimed)"

    @classmethod
    def unclaimed(cls, topic: str, count: int) -> SubscriptionStats:
        """The row for messages kept on a topic that has no subscription yet."""
        return cls(
            subscription=cls.UNCLAIMED,
            topic=topic,
            pending=count,
            in_flight=0,
            acked=0,
            dead_lettered=0,
        )


@runtime_checkable
class Subscription(Protocol):
    topic: str
    name: str
    ack_deadline_s: float

    async def pull(self, max_messages: int, timeout_s: float) -> list[Delivery]:
        """Lease up to ``max_messages``; wait at most ``timeout_s`` for the first one."""
        ...

    async def ack(self, deliveries: Sequence[Delivery]) -> None: ...

    async def nack(self, deliveries: Sequence[Delivery], delay_s: float = 0.0) -> None: ...

    async def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None: ...

    async def dead_letter(self, items: Sequence[tuple[Delivery, str, str]]) -> None:
        """Settle each ``(delivery, reason, error)`` by moving it to the dead-letter store."""
        ...


@runtime_checkable
class Broker(Protocol):
    url: str

    async def publish(self, topic: str, events: Sequence[Event]) -> None:
        """Publish events; ``data`` that is not bytes is JSON-encoded."""
        ...

    async def subscription(
        self, topic: str, name: str, *, ack_deadline_s: float = 60.0
    ) -> Subscription:
        """The named subscription on ``topic``, created if missing."""
        ...

    async def stats(self) -> list[SubscriptionStats]: ...

    async def dead_letters(
        self, *, subscription: str | None = None, limit: int = 100, include_replayed: bool = False
    ) -> list[DeadLetter]: ...

    async def replay(self, ids: Sequence[int]) -> int:
        """Put dead letters back on their subscription with a fresh attempt count."""
        ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> Broker: ...

    async def __aexit__(self, *exc: object) -> None: ...


def _loop_event(event: asyncio.Event) -> asyncio.Event:
    """``event``, or a fresh one if it was bound to another (finished) event loop.

    A broker can outlive one ``asyncio.run`` (``MemoryBroker.named``, a CLI that
    runs several loops); an ``asyncio.Event`` cannot.
    """
    loop = asyncio.get_running_loop()
    if getattr(event, "_scorebus_loop", loop) is not loop:
        event = asyncio.Event()
    event._scorebus_loop = loop  # type: ignore[attr-defined]
    return event


async def iterate(
    sub: Subscription, *, batch: int = 100, timeout_s: float = 1.0
) -> AsyncIterator[Delivery]:
    """Deliveries one by one, pulled in batches: the simple way to consume."""
    while True:
        for delivery in await sub.pull(batch, timeout_s):
            yield delivery
