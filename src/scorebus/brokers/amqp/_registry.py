"""What exists under a prefix: subscriptions, topics and delay queues.

AMQP cannot list queues or bindings (only the management plugin can, and it may
not be enabled), yet ``scorebus status`` and ``scorebus dlq`` run in another
process than the workers. So every process records what it creates as small
JSON messages in one classic queue, ``<prefix>:registry``, and reads them back
by getting every message and returning them (closing the channel). Duplicates
from several processes are removed while reading.

Reading hides the entries from another reader for a moment, so readers take
turns: a reader holds ``<prefix>:registry.lock``, an exclusive queue (one
connection at a time may declare it, and RabbitMQ deletes it with a connection
that dies), while it reads. Without the lock a ``scorebus status`` beside
workers that poll for idleness could miss a subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiormq
import msgspec
from aiormq import spec

from ...errors import BrokerUnavailable
from ._link import Link
from ._options import AmqpOptions
from ._wire import PERSISTENT


class _Entry(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=False):
    topic: str | None = None
    sub: str | None = None
    delay_ms: int | None = None


@dataclass
class View:
    """The registry as read: subscription -> topic, topics, subscription -> delay buckets."""

    subs: dict[str, str] = field(default_factory=dict)
    topics: set[str] = field(default_factory=set)
    delays: dict[str, set[int]] = field(default_factory=dict)


_ARGS = {"x-queue-type": "classic"}
_decode = msgspec.json.Decoder(_Entry).decode
_encode = msgspec.json.Encoder().encode


class Registry:
    def __init__(self, link: Link, opts: AmqpOptions) -> None:
        self._link = link
        self._queue = opts.registry
        self._timeout = opts.timeout
        self._declared = False
        self._turn = asyncio.Lock()  # the queue lock is per connection: one reader here too

    async def read(self) -> View:
        async with self._turn, self._locked():
            return await self._read()

    async def _read(self) -> View:
        view = View()
        seen: set[bytes] = set()
        async with self._link.browse(self._queue, 1_000_000) as (ch, msgs):
            for msg in msgs:
                if msg.body in seen:
                    await ch.basic_ack(msg.delivery_tag or 0)  # compact duplicates
                    continue
                seen.add(msg.body)
                try:
                    entry = _decode(msg.body)
                except msgspec.DecodeError:
                    continue
                if entry.sub is not None and entry.delay_ms is not None:
                    view.delays.setdefault(entry.sub, set()).add(entry.delay_ms)
                elif entry.sub is not None and entry.topic is not None:
                    view.subs[entry.sub] = entry.topic
                elif entry.topic is not None:
                    view.topics.add(entry.topic)
        return view

    @contextlib.asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        lock = f"{self._queue}.lock"
        give_up = time.monotonic() + self._timeout
        pause = 0.002
        while True:
            async with self._link.scratch("locking the registry") as ch:
                try:
                    await ch.queue_declare(lock, exclusive=True)
                    break
                except aiormq.exceptions.ChannelLockedResource:
                    pass  # another process is reading; the server closed this channel
            if time.monotonic() > give_up:
                raise BrokerUnavailable(f"the registry {self._queue!r} stayed locked")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)
        try:
            yield
        finally:
            async with self._link.scratch("unlocking the registry") as ch:
                await ch.queue_delete(lock)

    async def add_topic(self, topic: str) -> None:
        await self._add(_Entry(topic=topic))

    async def add_subscription(self, name: str, topic: str) -> None:
        await self._add(_Entry(sub=name, topic=topic))

    async def add_delay(self, name: str, bucket_ms: int) -> None:
        await self._add(_Entry(sub=name, delay_ms=bucket_ms))

    async def _add(self, entry: _Entry) -> None:
        if not self._declared:
            await self._link.declare_queue(self._queue, _ARGS)
            self._declared = True
        props = spec.Basic.Properties(content_type="application/json", delivery_mode=PERSISTENT)
        await self._link.publish([("", self._queue, _encode(entry), props)], "recording topology")

    @property
    def queue(self) -> str:
        return self._queue
