"""What exists under a prefix: subscriptions, topics and delay queues.

AMQP cannot list queues or bindings (only the management plugin can, and it may
not be enabled), yet ``scorebus status`` and ``scorebus dlq`` run in another
process than the workers. So every process records what it creates as small
JSON messages in one classic queue, ``<prefix>:registry``, and reads them back
by getting every message and returning them (closing the channel). Duplicates
from several processes are removed while reading.

Reading hides the entries from another reader for a moment, so two readers at
the same instant may each see part of the registry; scorebus only reads it when
a subscription is opened and for status and dead-letter commands.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
from aiormq import spec

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
        self._declared = False

    async def read(self) -> View:
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
