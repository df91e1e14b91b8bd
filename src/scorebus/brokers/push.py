"""A broker fed by HTTP pushes (Pub/Sub push subscriptions, Cloud Functions).

Push inverts pulling: each request hands over one event and waits for its
outcome. ``PushBroker.deliver`` queues the event on its subscription and
returns when the runtime settles it, so the ordinary scoring loop micro-batches
across concurrent requests and the HTTP answer follows the commit:

- ack           -> ``"ok"``    (2xx: Pub/Sub stops delivering)
- dead_letter   -> ``"dead"``  (2xx as well: the bad event is kept in the
  dead-letter store, and must not come back in a loop)
- nack          -> ``"retry"`` (5xx: Pub/Sub redelivers with its backoff)

Publishing (results to an output topic) goes to the ``publish_to`` broker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Literal

import msgspec

from ..errors import ConfigError
from ..events import Event, encode_data
from .base import Broker, DeadLetter, Delivery, SubscriptionStats
from .dlq_store import DeadLetterStore

Outcome = Literal["ok", "dead", "retry"]


class PushSubscription:
    def __init__(self, broker: PushBroker, topic: str, name: str, ack_deadline_s: float) -> None:
        self._broker = broker
        self.topic = topic
        self.name = name
        self.ack_deadline_s = ack_deadline_s
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self.acked = 0
        self.in_flight = 0

    async def pull(self, max_messages: int, timeout_s: float) -> list[Delivery]:
        out: list[Delivery] = []
        try:
            out.append(await asyncio.wait_for(self.queue.get(), timeout_s))
        except TimeoutError:
            return out
        while len(out) < max_messages and not self.queue.empty():
            out.append(self.queue.get_nowait())
        return out

    def _settle(self, deliveries: Sequence[Delivery], outcome: Outcome) -> None:
        for d in deliveries:
            future: asyncio.Future[Outcome] = d.handle
            if not future.done():
                future.set_result(outcome)
                self.in_flight -= 1

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        self.acked += len(deliveries)
        self._settle(deliveries, "ok")

    async def nack(self, deliveries: Sequence[Delivery], delay_s: float = 0.0) -> None:
        # The pusher owns redelivery and its backoff; the delay cannot be passed on.
        self._settle(deliveries, "retry")

    async def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        for d in deliveries:
            d.deadline = time.time() + seconds

    async def dead_letter(self, items: Sequence[tuple[Delivery, str, str]]) -> None:
        await self._broker.dlq.add(self.topic, self.name, items)
        if self._broker.publish_to is not None:
            # A serverless instance's disk does not outlive it: the dead letter must
            # also leave the instance before the push is acknowledged.
            letters = [
                msgspec.structs.replace(
                    d.event,
                    extensions={
                        **d.event.extensions,
                        "deadletterreason": reason,
                        "deadlettererror": error[:1000],
                        "deadletterattempts": str(d.attempt),
                    },
                )
                for d, reason, error in items
            ]
            try:
                await self._broker.publish_to.publish(f"{self.name}.dead-letter", letters)
            except Exception:
                # Not kept anywhere durable yet: let the pusher redeliver it.
                self._settle([d for d, _, _ in items], "retry")
                raise
        self._settle([d for d, _, _ in items], "dead")


class PushBroker:
    """Subscriptions fed by :meth:`deliver`; publishes go to ``publish_to``.

    Args:
        dlq: where dead letters are kept (``scorebus dlq`` reads the same file).
        publish_to: the broker that result events and handler events go to.
    """

    url = "push://"

    def __init__(self, *, dlq: DeadLetterStore, publish_to: Broker | None = None) -> None:
        self.dlq = dlq
        self.publish_to = publish_to
        self.subs: dict[str, PushSubscription] = {}

    async def __aenter__(self) -> PushBroker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.dlq.close()

    async def deliver(self, subscription: str, event: Event, *, attempt: int = 1) -> Outcome:
        """Hand one pushed event to a subscription and wait for its outcome."""
        sub = self.subs.get(subscription)
        if sub is None:
            raise ConfigError(
                f"no subscription {subscription!r} here; known: {', '.join(sorted(self.subs)) or 'none'}"
            )
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        data = encode_data(event.data)
        sub.in_flight += 1
        await sub.queue.put(
            Delivery(
                event.with_data(data),
                attempt=attempt,
                handle=future,
                subscription=sub,
                deadline=time.time() + sub.ack_deadline_s,
            )
        )
        return await future

    async def publish(self, topic: str, events: Sequence[Event]) -> None:
        if self.publish_to is None:
            raise ConfigError(
                f"cannot publish to {topic!r}: this push endpoint has no broker to publish to "
                "(set SCOREBUS_BROKER, e.g. pubsub://PROJECT)"
            )
        await self.publish_to.publish(topic, events)

    async def subscription(
        self, topic: str, name: str, *, ack_deadline_s: float = 60.0
    ) -> PushSubscription:
        if name not in self.subs:
            self.subs[name] = PushSubscription(self, topic, name, ack_deadline_s)
        return self.subs[name]

    async def stats(self) -> list[SubscriptionStats]:
        return [
            SubscriptionStats(
                subscription=s.name,
                topic=s.topic,
                pending=s.queue.qsize(),
                in_flight=s.in_flight,
                acked=s.acked,
                dead_lettered=await self.dlq.count(s.name),
            )
            for s in self.subs.values()
        ]

    async def dead_letters(
        self, *, subscription: str | None = None, limit: int = 100, include_replayed: bool = False
    ) -> list[DeadLetter]:
        return await self.dlq.letters(
            subscription=subscription, limit=limit, include_replayed=include_replayed
        )

    async def replay(self, ids: Sequence[int]) -> int:
        letters = await self.dlq.take(ids)
        for d in letters:
            await self.publish(d.topic, [_event_of(d)])
        await self.dlq.mark_replayed([d.id for d in letters])
        return len(letters)


def _event_of(letter: DeadLetter) -> Event:
    attrs = dict(letter.attributes)
    return Event(
        id=letter.event_id,
        type=letter.event_type,
        source=attrs.pop("source", "scorebus"),
        data=letter.payload,
        subject=attrs.pop("subject", None),
        extensions={k: v for k, v in attrs.items() if k not in ("id", "type", "time")},
    )
