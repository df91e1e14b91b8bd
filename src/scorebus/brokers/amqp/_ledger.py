"""Delivery tags of one consumer channel, and settling them in as few frames as possible.

RabbitMQ closes a channel that acks or nacks a tag twice, or an unknown one, so
every tag is settled exactly once: a lease is *claimed* (synchronously, so
nothing else can settle it) before its frame is sent. An ack with
``multiple=True`` settles every outstanding tag up to it, so it is only used
below the first tag still buffered, leased or claimed; the rest go one by one.
Frames are sent under a lock, in the order they were worked out.

After a reconnect the deliveries come on a new channel and tags start again at
1; everything of the old channel is void, because RabbitMQ requeued it when the
channel died.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence

import aiormq
from aio_pika.abc import AbstractIncomingMessage
from aiormq.abc import AbstractChannel

log = logging.getLogger(__name__)

SETTLE_ERRORS = (aiormq.exceptions.AMQPError, OSError, RuntimeError)


class Lease:
    """One delivery held by this consumer; ``live`` until settled or expired."""

    __slots__ = ("channel", "deadline", "live", "msg")

    def __init__(self, channel: AbstractChannel, msg: AbstractIncomingMessage, deadline: float):
        self.channel = channel
        self.msg = msg
        self.deadline = deadline
        self.live = True


class Ledger:
    """The unsettled tags of the current channel, in delivery order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.channel: AbstractChannel | None = None
        self.leased = 0
        self._unsettled: OrderedDict[int, None] = OrderedDict()
        self._lock = asyncio.Lock()

    @property
    def open(self) -> bool:
        return self.channel is not None and not self.channel.is_closed

    def arrived(self, msg: AbstractIncomingMessage) -> bool:
        """Record a delivery; True when it came on a new channel (all else is void)."""
        fresh = msg.channel is not self.channel
        if fresh:
            self.channel = msg.channel
            self._unsettled = OrderedDict()
            self.leased = 0
        self._unsettled[msg.delivery_tag or 0] = None
        return fresh

    def current(self, lease: Lease) -> bool:
        return lease.live and lease.channel is self.channel and not lease.channel.is_closed

    def lease(self, msg: AbstractIncomingMessage, deadline: float) -> Lease | None:
        """A lease on a buffered delivery, or None if its channel has died."""
        if msg.channel is not self.channel or not self.open:
            return None
        self.leased += 1
        return Lease(msg.channel, msg, deadline)

    def claim(self, leases: Iterable[Lease]) -> list[Lease]:
        """The still-valid ones among ``leases``, taken so nothing else settles them."""
        claimed = []
        for lease in leases:
            if self.current(lease):
                lease.live = False
                claimed.append(lease)
        self.leased -= len(claimed)
        return claimed

    async def send(self, leases: Sequence[Lease], *, ack: bool) -> None:
        """Ack, or nack with requeue, claimed leases.

        Never raises: a settle on a channel that has died is moot, because RabbitMQ
        already requeued everything that channel held.
        """
        if not leases:
            return
        raw = leases[0].channel
        async with self._lock:
            if raw is not self.channel or raw.is_closed:
                return
            tags = sorted(lease.msg.delivery_tag or 0 for lease in leases)
            for tag in tags:
                self._unsettled.pop(tag, None)
            first = next(iter(self._unsettled), None)
            cut = len(tags) if first is None else bisect.bisect_left(tags, first)
            try:
                if cut:
                    await _frame(raw, tags[cut - 1], multiple=cut > 1, ack=ack)
                for tag in tags[cut:]:
                    await _frame(raw, tag, multiple=False, ack=ack)
            except SETTLE_ERRORS as exc:
                log.warning(
                    "subscription=%s could not %s %d deliveries (%s: %s); RabbitMQ redelivers them",
                    self.name,
                    "ack" if ack else "requeue",
                    len(tags),
                    type(exc).__name__,
                    exc,
                )


async def _frame(raw: AbstractChannel, tag: int, *, multiple: bool, ack: bool) -> None:
    if ack:
        await raw.basic_ack(tag, multiple=multiple, wait=False)
    else:
        await raw.basic_nack(tag, multiple=multiple, requeue=True, wait=False)
