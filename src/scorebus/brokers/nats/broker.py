"""The NATS JetStream broker: topics, subscriptions, stats, dead letters, replay."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import nats.js.errors
from nats.js import JetStreamContext, api

from ...errors import ConfigError
from ...events import Event
from ..base import DeadLetter, SubscriptionStats
from ..dlq_store import DeadLetterStore
from .connection import Connection, Message
from .messages import REPLAY_FOR, encode
from .options import RESERVED, describe, described, durable_name, parse_url
from .subscription import NatsSubscription

_PAGE = 256  # JetStream's page size for consumer listings


class NatsBroker:
    """NATS JetStream as a scorebus broker.

    Args:
        url: ``nats://[USER:PASSWORD@]HOST[:PORT][?option=value&...]``; the options
            are listed in ``docs/connectors/nats.md``.

    Raises:
        ConfigError: a malformed URL or an unknown option.

    Example::

        async with NatsBroker("nats://127.0.0.1:4222?prefix=fraud") as broker:
            await broker.publish("transactions", [Event.new("tx", {"amount": 3.5})])
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.options = parse_url(url)
        self._conn = Connection(self.options)
        self._store = DeadLetterStore(self.options.dlq)
        self._subs: dict[str, NatsSubscription] = {}

    async def __aenter__(self) -> NatsBroker:
        await self._conn.client()  # a wrong URL fails here, not at the first pull
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for sub in self._subs.values():
            await sub.close()
        await self._conn.close()
        await self._store.close()

    async def publish(self, topic: str, events: Sequence[Event]) -> None:
        """Publish; an event id already published to ``topic`` within the dedupe window is dropped."""
        if events:
            subject = self.options.subject(topic)
            await self._conn.publish(subject, [encode(e, f"{topic}:{e.id}") for e in events])

    async def subscription(
        self, topic: str, name: str, *, ack_deadline_s: float = 60.0
    ) -> NatsSubscription:
        """The durable consumer ``name`` on ``topic``, created if missing.

        The first subscription on a topic starts from the topic's first stored
        message (what was published before it existed); later ones start at the
        next message. Calling again updates the consumer's AckWait.

        Raises:
            ConfigError: ``name`` exists on another topic, or ``ack_deadline_s`` is out of range.
        """
        if not 0 < ack_deadline_s <= 3600:
            raise ConfigError(f"ack_deadline_s={ack_deadline_s}: must be in (0, 3600]")
        subject = self.options.subject(topic)
        durable = durable_name(name)
        js = await self._conn.jetstream()
        await self._conn.retry(
            f"opening subscription {name!r}",
            lambda: self._ensure_consumer(js, topic, subject, name, durable, ack_deadline_s),
        )
        sub = self._subs.get(name)
        if sub is None:
            sub = self._subs[name] = NatsSubscription(
                self._conn,
                self._store,
                topic=topic,
                name=name,
                durable=durable,
                ack_deadline_s=ack_deadline_s,
            )
        sub.ack_deadline_s = ack_deadline_s
        return sub

    async def _ensure_consumer(
        self, js: JetStreamContext, topic: str, subject: str, name: str, durable: str, ack: float
    ) -> None:
        stream = self.options.stream
        refused: nats.js.errors.APIError | None = None
        for _ in range(3):  # another process may create it between our look and our create
            try:
                info = await js.consumer_info(stream, durable)
            except nats.js.errors.NotFoundError:
                try:
                    await js.add_consumer(stream, await self._new_consumer(js, topic, name, ack))
                    return
                except nats.js.errors.BadRequestError as exc:
                    refused = exc
                    continue
            meta = described(info.config.description)
            if meta is None:
                raise ConfigError(
                    f"JetStream consumer {durable!r} on stream {stream!r} was not made by"
                    f" scorebus: choose another subscription name than {name!r}"
                )
            if meta[1] != topic or info.config.filter_subject != subject:
                raise ConfigError(
                    f"subscription {name!r} already exists on topic {meta[1]!r}, not {topic!r}"
                )
            if not math.isclose(info.config.ack_wait or 0.0, ack, rel_tol=1e-6):
                info.config.ack_wait = (
                    ack  # AckWait is one of the fields JetStream updates in place
                )
                await js.add_consumer(stream, info.config)
            return
        raise ConfigError(
            f"subscription {name!r}: JetStream on {self.options.display} refused its consumer"
            f" {durable!r}: {refused.description if refused else 'unknown reason'}"
        )

    async def _new_consumer(
        self, js: JetStreamContext, topic: str, name: str, ack: float
    ) -> api.ConsumerConfig:
        subject = self.options.subject(topic)
        state = (await js.stream_info(self.options.stream, subjects_filter=subject)).state
        stored = (state.subjects or {}).get(subject, 0)
        claimed = any(c.config.filter_subject == subject for c in await self._consumers(js))
        config = api.ConsumerConfig(
            durable_name=durable_name(name),
            name=durable_name(name),
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=ack,
            # The runtime counts attempts and dead-letters; JetStream never gives up.
            max_deliver=-1,
            filter_subject=subject,
            max_ack_pending=self.options.max_ack_pending,
            replay_policy=api.ReplayPolicy.INSTANT,
        )
        if claimed:
            # Later subscriptions see only what comes after them, like Pub/Sub.
            config.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = state.last_seq + 1
            config.description = describe(name, topic, base=stored)
        else:
            # The first one adopts what was published before any subscription existed.
            config.deliver_policy = api.DeliverPolicy.ALL
            config.description = describe(name, topic, base=0)
        return config

    async def _consumers(self, js: JetStreamContext) -> list[api.ConsumerInfo]:
        """Every consumer scorebus made on the prefix's stream."""
        found: list[api.ConsumerInfo] = []
        while True:
            page = await js.consumers_info(self.options.stream, offset=len(found))
            found += page
            if len(page) < _PAGE:
                return [c for c in found if described(c.config.description) is not None]

    async def _ours(self) -> dict[str, str]:
        """Subscription name -> topic, for every subscription of this prefix."""
        js = await self._conn.jetstream()
        consumers = await self._conn.retry("listing subscriptions", lambda: self._consumers(js))
        return {meta[0]: meta[1] for c in consumers if (meta := described(c.config.description))}

    async def stats(self) -> list[SubscriptionStats]:
        """Per subscription: ``pending`` is the consumer's NumPending, ``in_flight`` its
        NumAckPending, ``acked`` is derived from the stream's per-subject counts (exact
        while the stream keeps every message), ``dead_lettered`` comes from the store.
        Topics with messages but no subscription yet show as ``(unclaimed)``."""
        js = await self._conn.jetstream()
        opts = self.options

        async def read() -> tuple[api.StreamState, list[api.ConsumerInfo]]:
            info = await js.stream_info(opts.stream, subjects_filter=f"{opts.prefix}.>")
            return info.state, await self._consumers(js)

        state, consumers = await self._conn.retry("reading stats", read)
        counts = state.subjects or {}
        rows, claimed = [], set()
        for c in consumers:
            name, topic, base = described(c.config.description) or ("", "", 0)
            subject = c.config.filter_subject or ""
            claimed.add(subject)
            pending, in_flight = c.num_pending or 0, c.num_ack_pending or 0
            # Every message since the consumer began is pending, leased, dead-lettered
            # (one marker message each) or acked.
            dead_total = counts.get(opts.dead_marker(c.name), 0)
            acked = counts.get(subject, 0) - base - pending - in_flight - dead_total
            dead = await self._store.count(name) if dead_total else 0
            rows.append(
                SubscriptionStats(
                    subscription=name,
                    topic=topic,
                    pending=pending,
                    in_flight=in_flight,
                    acked=max(0, acked),
                    dead_lettered=dead,
                )
            )
        rows.sort(key=lambda s: s.subscription)
        for subject, count in sorted(counts.items()):
            topic = opts.topic_of(subject)
            if subject not in claimed and topic.split(".")[0] != RESERVED:
                rows.append(SubscriptionStats.unclaimed(topic, count))
        return rows

    async def dead_letters(
        self, *, subscription: str | None = None, limit: int = 100, include_replayed: bool = False
    ) -> list[DeadLetter]:
        """Dead letters of this prefix's subscriptions, oldest first.

        The store file may be shared with other brokers; only letters of
        subscriptions that exist on this stream are listed (and replayed).
        """
        ours = await self._ours()
        names = sorted(ours) if subscription is None else [subscription]
        letters: list[DeadLetter] = []
        for name in names:
            if name in ours:
                letters += await self._store.letters(
                    subscription=name, limit=limit, include_replayed=include_replayed
                )
        return sorted(letters, key=lambda d: d.id)[:limit]

    async def replay(self, ids: Sequence[int]) -> int:
        """Republish dead letters to their topic for their subscription only.

        Each gets the ``Nats-Msg-Id`` ``<topic>:<event id>:replay:<letter id>``, so
        the dedupe window does not drop it as the event id it already published,
        and replaying twice after a crash still publishes once.
        """
        if not ids:
            return 0
        ours = await self._ours()
        letters = [d for d in await self._store.take(ids) if ours.get(d.subscription) == d.topic]
        by_topic: dict[str, list[Message]] = defaultdict(list)
        for d in letters:
            msg_id = f"{d.topic}:{d.event_id}:replay:{d.id}"
            by_topic[d.topic].append(encode(_event_of(d), msg_id, {REPLAY_FOR: d.subscription}))
        for topic, messages in by_topic.items():
            await self._conn.publish(self.options.subject(topic), messages)
        await self._store.mark_replayed([d.id for d in letters])
        return len(letters)


def _event_of(letter: DeadLetter) -> Event:
    attrs = dict(letter.attributes)
    return Event(
        id=attrs.pop("id", letter.event_id),
        type=attrs.pop("type", letter.event_type),
        source=attrs.pop("source", "scorebus"),
        subject=attrs.pop("subject", None),
        data=letter.payload,
        extensions=attrs,
    )
