"""Google Cloud Pub/Sub (and its emulator) as a scorebus broker: ``pubsub://PROJECT``.

A scorebus topic is a Pub/Sub topic and a subscription a Pub/Sub subscription,
both created on first use (see :mod:`.admin` for the settings and
:mod:`.options` for the URL). Events travel in CloudEvents binary mode
(:mod:`.binding`); pulling, leases and settling are in :mod:`.subscription`.

Where Pub/Sub differs from the embedded broker, and what scorebus does:

- **Messages published before any subscription.** Pub/Sub drops them; scorebus
  keeps them on a holding subscription that the first real subscription adopts
  (see :mod:`.unclaimed`).
- **Dead letters.** Kept in scorebus's own store (``?dlq=``) for listing and
  replay, and published to ``<subscription>.dead-letter``. Replay republishes to
  the topic marked for the letter's subscription only; the new message has a
  new Pub/Sub id and its attempts start again at 1.
- **Stats.** Pub/Sub's API does not report a subscription's backlog (Cloud
  Monitoring's ``subscription/num_undelivered_messages`` does, minutes late;
  the emulator has nothing), so ``pending`` is ``None`` (unknown). ``in_flight`` and
  ``acked`` count the leases held and the acks sent by *this process*;
  ``dead_lettered`` comes from the dead-letter store.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import msgspec

from ...errors import ConfigError, TooLargeError
from ...events import Event
from ..base import DeadLetter, Delivery, SubscriptionStats
from ..dlq_store import DeadLetterStore
from .admin import DEAD_LETTER_SUFFIX, Admin, SubscriptionSettings
from .binding import (
    FOR,
    Sized,
    build,
    dead_letter_attributes,
    event_from_letter,
    letter_extensions,
    to_message,
)
from .leases import Leases
from .options import MAX_MESSAGE_BYTES, check_name, parse_url
from .rpc import PublishRequest, Rpc
from .subscription import PubSubSubscription, lease_seconds
from .unclaimed import HOLDING_SUFFIX, adopt_unclaimed, keep_unclaimed

UNKNOWN = None  # Pub/Sub does not tell a subscription's backlog


class PubSubBroker:
    """Pub/Sub broker; use as an async context manager or call :meth:`close`.

    Args:
        url: ``pubsub://PROJECT[?option=value&...]``; see :mod:`.options`.

    Raises:
        ConfigError: a bad URL, or no credentials for real Pub/Sub.

    Example::

        async with PubSubBroker("pubsub://demo?emulator=127.0.0.1:8085") as broker:
            sub = await broker.subscription("transactions", "fraud", ack_deadline_s=30)
            await broker.publish("transactions", [Event.new("tx", {"amount": 3})])
            for d in await sub.pull(100, 1.0):
                await d.ack()
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.opts = parse_url(url)
        self._rpc = Rpc(self.opts)
        self.admin = Admin(self._rpc)
        self._store = DeadLetterStore(self.opts.dlq)
        self._leases: dict[str, Leases] = {}
        self._subs: list[PubSubSubscription] = []
        self._topics: set[str] = set()  # known to exist
        self._claimed: set[str] = set()  # known to have a real subscription
        self._closed = False
        self.publish_requests = 0  # publish calls made: batching is observable

    async def __aenter__(self) -> PubSubBroker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for sub in self._subs:
            await sub.close()
        await self._store.close()
        await self._rpc.aclose()

    async def publish(self, topic: str, events: Sequence[Event]) -> None:
        await self._publish(topic, events, {})

    async def _publish(self, topic: str, events: Sequence[Event], extra: Mapping[str, str]) -> None:
        if not events:
            return
        check_name("topic", topic)
        messages = [to_message(e, ordering=self.opts.ordering, extra=extra) for e in events]
        for event, (_, size) in zip(events, messages, strict=True):
            if size > MAX_MESSAGE_BYTES:
                raise TooLargeError(
                    f"event {event.id}: {size} bytes is over Pub/Sub's 10 MB message limit"
                )
        if self.opts.create:
            await self._ensure_target(topic)
        try:
            await self._send(topic, messages)
        except ConfigError:
            self._forget(topic)  # deleted meanwhile? the next publish creates it again
            raise

    def _forget(self, topic: str) -> None:
        self._topics.discard(topic)
        self._claimed.discard(topic)

    async def _send(self, topic: str, messages: list[Sized]) -> None:
        path = self.opts.topic_path(topic)
        for chunk in self._chunks(messages):
            await self._rpc.call(
                "publish",
                PublishRequest(topic=path, messages=chunk),
                timeout=60,
                what=f"publish to topic {topic!r}",
            )
            self.publish_requests += 1

    def _chunks(self, messages: list[Sized]) -> Iterator[list[Any]]:
        chunk: list[Any] = []
        size = 0
        for message, n in messages:
            if chunk and (
                len(chunk) >= self.opts.publish_max_messages
                or size + n > self.opts.publish_max_bytes
            ):
                yield chunk
                chunk, size = [], 0
            chunk.append(message)
            size += n
        if chunk:
            yield chunk

    async def _ensure_topic(self, topic: str) -> None:
        if topic not in self._topics:
            await self.admin.create_topic(topic)
            self._topics.add(topic)

    async def _ensure_target(self, topic: str) -> None:
        """Make sure what is published to ``topic`` is kept (see :mod:`.unclaimed`)."""
        if topic not in self._claimed:
            await self._ensure_topic(topic)
            if await keep_unclaimed(self.admin, topic):
                self._claimed.add(topic)

    async def subscription(
        self, topic: str, name: str, *, ack_deadline_s: float = 60.0
    ) -> PubSubSubscription:
        if not 0 < ack_deadline_s <= 3600:
            raise ConfigError(f"ack_deadline_s={ack_deadline_s}: must be in (0, 3600]")
        check_name("topic", topic)
        check_name("subscription", name)
        lease_s = lease_seconds(ack_deadline_s)
        await self._ensure_topic(topic)
        info = await self.admin.subscription(name)
        if info is None:
            settings = SubscriptionSettings(
                ack_deadline_s=lease_s,
                max_delivery_attempts=self.opts.max_delivery_attempts,
                retention_s=self.opts.retention_s,
                ordering=self.opts.ordering,
            )
            try:
                await self.admin.create_subscription(name, topic, settings)
            except ConfigError:
                self._forget(topic)
                raise
            info = await self.admin.subscription(name)
            if info is None:
                raise ConfigError(f"subscription {name!r} vanished right after it was created")
        if info.topic != topic:
            raise ConfigError(
                f"subscription {name!r} already exists on topic {info.topic!r}, not {topic!r}"
            )
        await adopt_unclaimed(self._rpc, self.admin, self._send, topic, name)
        self._claimed.add(topic)
        sub = PubSubSubscription(
            self,
            topic,
            name,
            lease_s=lease_s,
            server_lease_s=info.ack_deadline_s,
            dead_letter_topic=info.dead_letter_topic,
        )
        self._subs.append(sub)
        return sub

    async def _dead_letter(
        self, sub: PubSubSubscription, items: Sequence[tuple[Delivery, str, str]]
    ) -> None:
        """Record dead letters (the subscription acks them afterwards)."""
        # The store keeps only id/type/source/subject/extensions; carry time and
        # content type as attributes too, so a replay restores the whole envelope.
        stored = [
            (
                Delivery(
                    msgspec.structs.replace(d.event, extensions=letter_extensions(d.event)),
                    attempt=d.attempt,
                    handle=d.handle,
                    subscription=sub,
                ),
                reason,
                error,
            )
            for d, reason, error in items
        ]
        await self._store.add(sub.topic, sub.name, stored)
        if sub.dead_letter_topic:
            letters = [
                build(
                    bytes(d.event.data or b""),
                    dead_letter_attributes(d.event, reason, error, d.attempt, sub.name),
                )
                for d, reason, error in items
            ]
            await self._send(sub.dead_letter_topic, letters)

    async def stats(self) -> list[SubscriptionStats]:
        now = time.time()
        out = []
        for info in await self.admin.list_subscriptions():
            if info.name.endswith(DEAD_LETTER_SUFFIX):
                continue
            if info.name.endswith(HOLDING_SUFFIX):
                name, in_flight, acked, dead = "(unclaimed)", 0, 0, 0
            else:
                leases = self._leases.get(info.name) or Leases()
                name, in_flight, acked = info.name, leases.in_flight(now), leases.acked
                dead = await self._store.count(info.name)
            out.append(
                SubscriptionStats(
                    subscription=name,
                    topic=info.topic,
                    pending=UNKNOWN,
                    in_flight=in_flight,
                    acked=acked,
                    dead_lettered=dead,
                )
            )
        return out

    async def dead_letters(
        self, *, subscription: str | None = None, limit: int = 100, include_replayed: bool = False
    ) -> list[DeadLetter]:
        return await self._store.letters(
            subscription=subscription, limit=limit, include_replayed=include_replayed
        )

    async def replay(self, ids: Sequence[int]) -> int:
        if not ids:
            return 0
        letters = await self._store.take(ids)
        groups: dict[tuple[str, str], list[Event]] = {}
        for letter in letters:
            event = event_from_letter(letter.attributes, letter.payload)
            groups.setdefault((letter.topic, letter.subscription), []).append(event)
        for (topic, subscription), events in groups.items():
            # Only the letter's own subscription takes it; the topic's others drop it.
            await self._publish(topic, events, {FOR: subscription})
        await self._store.mark_replayed([letter.id for letter in letters])
        return len(letters)
