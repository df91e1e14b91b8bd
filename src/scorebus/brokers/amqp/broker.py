"""The RabbitMQ broker: topics are fanout exchanges, subscriptions quorum queues."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import msgspec

from ...errors import ConfigError
from ...events import Event, encode_data
from ..base import DeadLetter, SubscriptionStats
from ._letters import DeadLetterQueues
from ._link import Link, Outgoing
from ._options import AmqpOptions, parse_url
from ._registry import Registry, View
from ._wire import copy_of, properties
from .subscription import AmqpSubscription

log = logging.getLogger(__name__)

_BATCH = 500  # messages moved per round when adopting unclaimed ones


class AmqpBroker:
    """RabbitMQ through aio-pika: ``amqp://USER:PASS@HOST:PORT/VHOST?prefix=...``.

    See ``docs/connectors/rabbitmq.md`` for the URL options, the topology and the
    guarantees. Connects on first use (or on ``async with``); use as an async
    context manager or call :meth:`close`.

    Args:
        url: the RabbitMQ URL with scorebus's options in its query string.

    Raises:
        ConfigError: the URL is malformed or has an unknown option.
    """

    def __init__(self, url: str) -> None:
        self._opts: AmqpOptions = parse_url(url)
        self.url = self._opts.redacted
        self._link = Link(self._opts)
        self._registry = Registry(self._link, self._opts)
        self._letters = DeadLetterQueues(self._link, self._opts)
        self._subs: dict[str, AmqpSubscription] = {}
        self._sub_topics: dict[str, str] = {}
        self._topics: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> AmqpBroker:
        await self._ready()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _ready(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None:
                # A connection cannot outlive its event loop (a CLI running several
                # asyncio.run): start afresh; the old loop's sockets died with it.
                self._link = Link(self._opts)
                self._registry = Registry(self._link, self._opts)
                self._letters = DeadLetterQueues(self._link, self._opts)
                self._subs.clear()
                self._topics.clear()
            self._loop = loop
        await self._link.open()

    async def close(self) -> None:
        """Stop consuming and close the connection; unsettled deliveries are requeued."""
        for sub in list(self._subs.values()):
            await sub.close()
        self._subs.clear()
        await self._link.close()

    # ---------------------------------------------------------------- publishing

    async def publish(self, topic: str, events: Sequence[Event]) -> None:
        """Publish events to ``topic`` and wait for every publisher confirm.

        Raises:
            BrokerUnavailable: RabbitMQ cannot be reached or refused a message.
        """
        if not events:
            return
        await self._ready()
        await self._declare_topic(topic)
        exchange = self._opts.exchange(topic)
        now = time.time()
        items: list[Outgoing] = []
        for e in events:
            if not e.time:
                e = msgspec.structs.replace(e, time=now)
            items.append((exchange, "", encode_data(e.data), properties(e)))
        await self._link.publish(items, f"publishing to topic {topic!r}")

    async def _declare_topic(self, topic: str) -> None:
        """The topic's exchange, with an alternate exchange and a holding queue that
        keep what is published while the topic has no subscription."""
        if topic in self._topics:
            return
        o = self._opts
        ae, hold = o.unrouted(topic), o.unclaimed(topic)
        async with self._link.scratch(f"declaring topic {topic!r}") as ch:
            await ch.exchange_declare(ae, exchange_type="fanout", durable=True, internal=True)
            await ch.queue_declare(hold, durable=True, arguments=o.holding_args())
            await ch.queue_bind(hold, ae, routing_key="")
            await ch.exchange_declare(
                o.exchange(topic),
                exchange_type="fanout",
                durable=True,
                arguments={"alternate-exchange": ae},
            )
        await self._registry.add_topic(topic)
        self._topics.add(topic)

    async def _declare_delay(self, sub: AmqpSubscription, bucket: int) -> None:
        queue = self._opts.delay(sub.name, bucket)
        await self._link.declare_queue(queue, self._opts.delay_args(sub.name))
        await self._registry.add_delay(sub.name, bucket)
        sub.delays.add(bucket)

    # ---------------------------------------------------------------- subscriptions

    async def subscription(
        self, topic: str, name: str, *, ack_deadline_s: float = 60.0
    ) -> AmqpSubscription:
        """The named subscription on ``topic``, created if missing.

        The first subscription of a topic adopts what was published to it before.

        Raises:
            ConfigError: ``name`` exists on another topic, or a bad ack deadline.
            BrokerUnavailable: RabbitMQ cannot be reached.
        """
        if not 0 < ack_deadline_s <= 3600:
            raise ConfigError(f"ack_deadline_s={ack_deadline_s}: must be in (0, 3600]")
        await self._ready()
        known = self._sub_topics.get(name)
        if known is None:
            known = (await self._registry.read()).subs.get(name)
        if known is not None and known != topic:
            raise ConfigError(
                f"subscription {name!r} already exists on topic {known!r}, not {topic!r}"
            )
        sub = self._subs.get(name)
        if sub is not None:
            sub.ack_deadline_s = ack_deadline_s
            return sub
        await self._declare_topic(topic)
        o = self._opts
        queue = o.queue(name)
        async with self._link.scratch(f"declaring subscription {name!r}") as ch:
            await ch.queue_declare(o.dlq(name), durable=True, arguments=o.dlq_args())
            await ch.queue_declare(queue, durable=True, arguments=o.queue_args(name))
            await ch.queue_bind(queue, o.exchange(topic), routing_key="")
        if known is None:
            await self._registry.add_subscription(name, topic)
        self._sub_topics[name] = topic
        await self._adopt_unclaimed(topic, queue)
        sub = self._subs[name] = AmqpSubscription(self, topic, name, ack_deadline_s)
        return sub

    async def _adopt_unclaimed(self, topic: str, queue: str) -> None:
        """Move messages held for a topic without subscriptions to ``queue``."""
        hold = self._opts.unclaimed(topic)
        while True:
            async with self._link.browse(hold, _BATCH) as (ch, msgs):
                if not msgs:
                    return
                await self._link.publish(
                    [("", queue, m.body, copy_of(m.header.properties)) for m in msgs],
                    f"moving unclaimed messages of topic {topic!r}",
                )
                await ch.basic_ack(msgs[-1].delivery_tag or 0, multiple=True)
            log.info("topic=%s %d unclaimed message(s) adopted by %s", topic, len(msgs), queue)
            if len(msgs) < _BATCH:
                return

    def _known(self, view: View, subscription: str | None = None) -> list[tuple[str, str]]:
        subs = {**view.subs, **self._sub_topics}
        return sorted(
            (name, topic)
            for name, topic in subs.items()
            if subscription is None or name == subscription
        )

    # ---------------------------------------------------------------- status

    async def stats(self) -> list[SubscriptionStats]:
        """Per subscription: ready messages (pending), leased or waiting in a delay
        queue (in flight), acked by this process, and dead letters."""
        await self._ready()
        view = await self._registry.read()
        o = self._opts
        out = []
        for name, topic in self._known(view):
            local = self._subs.get(name)
            buckets = sorted(view.delays.get(name, set()) | (local.delays if local else set()))
            ready, dead, *delayed = await self._link.count(
                [(o.queue(name), o.queue_args(name)), (o.dlq(name), o.dlq_args())]
                + [(o.delay(name, b), o.delay_args(name)) for b in buckets]
            )
            out.append(
                SubscriptionStats(
                    subscription=name,
                    topic=topic,
                    pending=ready + (local.buffered if local else 0),
                    in_flight=sum(delayed) + (local.in_flight if local else 0),
                    acked=local.acked if local else 0,
                    dead_lettered=dead,
                )
            )
        topics = sorted(view.topics | self._topics)
        held = await self._link.count([(o.unclaimed(t), o.holding_args()) for t in topics])
        for topic, count in zip(topics, held, strict=True):
            if count:
                out.append(SubscriptionStats.unclaimed(topic, count))
        return out

    # ---------------------------------------------------------------- dead letters

    async def dead_letters(
        self, *, subscription: str | None = None, limit: int = 100, include_replayed: bool = False
    ) -> list[DeadLetter]:
        """Dead letters, oldest first, read from each ``<prefix>.<sub>.dlq`` without
        removing them (and from ``.dlq:replayed`` with ``include_replayed``)."""
        await self._ready()
        subs = self._known(await self._registry.read(), subscription)
        return await self._letters.list(subs, limit=limit, include_replayed=include_replayed)

    async def replay(self, ids: Sequence[int]) -> int:
        """Republish dead letters to their subscription queue (default exchange) with a
        fresh attempt count; each leaves a record in ``.dlq:replayed``."""
        if not ids:
            return 0
        await self._ready()
        return await self._letters.replay(self._known(await self._registry.read()), ids)

    # ---------------------------------------------------------------- teardown

    async def delete_namespace(self) -> None:
        """Delete every exchange and queue under this URL's ``prefix``, messages
        included (tests and teardown; there is no undo)."""
        await self._ready()
        for sub in list(self._subs.values()):
            await sub.close()
        self._subs.clear()
        view = await self._registry.read()
        o = self._opts
        subs = {**view.subs, **self._sub_topics}
        topics = view.topics | self._topics | set(subs.values())
        queues = [o.registry]
        for name in subs:
            queues += [o.queue(name), o.dlq(name), o.replayed(name)]
            queues += [o.delay(name, b) for b in view.delays.get(name, set())]
        queues += [o.unclaimed(t) for t in topics]
        exchanges = [x for t in topics for x in (o.exchange(t), o.unrouted(t))]
        await self._link.delete(queues, exchanges)
        self._sub_topics.clear()
        self._topics.clear()
