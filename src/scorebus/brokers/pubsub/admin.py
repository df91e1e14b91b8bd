"""Topics and subscriptions: create (idempotently), inspect, list, delete.

Used by the broker (topics and subscriptions are created on first use) and by
``scorebus topics create|list`` and ``run --create``. A subscription is created
with:

- ``ack_deadline_seconds``: the requested lease clamped to Pub/Sub's 10-600 s
  (a shorter lease is applied per pull with ``modifyAckDeadline``);
- a dead-letter policy to ``<subscription>.dead-letter`` after
  ``max_delivery_attempts`` (5-100, default 100), with a subscription of the same
  name on that topic so the letters are kept (Pub/Sub drops messages on a topic
  without subscriptions). The policy is also what makes Pub/Sub report each
  message's delivery attempt. On Google Cloud the Pub/Sub service agent needs
  publisher on the dead-letter topic and subscriber on the subscription;
- ``message_retention_duration`` (default the 7-day maximum), no expiration (the
  default would delete a subscription idle for 31 days), and no retry policy
  unless asked (scorebus expresses each retry's delay itself).

Example::

    admin = Admin(Rpc(parse_url("pubsub://my-project?emulator=127.0.0.1:8085")))
    await admin.create_topic("transactions")
    await admin.create_subscription("fraud", "transactions", SubscriptionSettings())
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.pubsub_v1 import PublisherClient, SubscriberClient
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport
from google.pubsub_v1.types import DeadLetterPolicy, ExpirationPolicy, RetryPolicy, Subscription

from .options import check_name
from .rpc import Rpc, translate

R = TypeVar("R")
DEAD_LETTER_SUFFIX = ".dead-letter"
_TIMEOUT_S = 30.0


@dataclass(frozen=True, kw_only=True)
class SubscriptionSettings:
    """How a subscription is created (an existing one is left as it is)."""

    ack_deadline_s: float = 60.0
    max_delivery_attempts: int = 100  # 0: no dead-letter policy
    retention_s: int = 604_800
    ordering: bool = False
    retry_min_s: float | None = None
    retry_max_s: float | None = None


@dataclass(frozen=True, kw_only=True)
class SubscriptionInfo:
    """A subscription as Pub/Sub reports it (short names, not resource paths)."""

    name: str
    topic: str
    ack_deadline_s: int
    dead_letter_topic: str | None
    max_delivery_attempts: int
    retention_s: int
    ordering: bool


def dead_letter_name(subscription: str) -> str:
    return subscription + DEAD_LETTER_SUFFIX


class Admin:
    """Administrative calls, through the GAPIC clients on the broker's channel (in threads)."""

    def __init__(self, rpc: Rpc) -> None:
        self.opts = rpc.opts
        self._pub = PublisherClient(transport=PublisherGrpcTransport(channel=rpc.channel))
        self._sub = SubscriberClient(transport=SubscriberGrpcTransport(channel=rpc.channel))

    async def _run(
        self,
        what: str,
        fn: Callable[..., R],
        *,
        expected: tuple[type[Exception], ...] = (),
        **kwargs: Any,
    ) -> R:
        # No GAPIC retry: an unreachable server fails at once and the caller decides.
        call = functools.partial(fn, retry=None, timeout=_TIMEOUT_S, **kwargs)
        try:
            return await asyncio.get_running_loop().run_in_executor(None, call)
        except expected:
            raise
        except gexc.GoogleAPICallError as exc:
            raise translate(exc, self.opts, what) from exc

    async def create_topic(self, topic: str) -> bool:
        """Create ``topic``; False if it already existed."""
        path = self.opts.topic_path(check_name("topic", topic))
        try:
            await self._run(
                f"create topic {topic!r}",
                self._pub.create_topic,
                expected=(gexc.AlreadyExists,),
                name=path,
            )
        except gexc.AlreadyExists:
            return False
        return True

    async def subscription(self, name: str) -> SubscriptionInfo | None:
        """The subscription ``name``, or None if there is none."""
        path = self.opts.subscription_path(check_name("subscription", name))
        try:
            sub = await self._run(
                f"subscription {name!r}",
                self._sub.get_subscription,
                expected=(gexc.NotFound,),
                subscription=path,
            )
        except gexc.NotFound:
            return None
        return _info(sub)

    async def create_subscription(
        self, name: str, topic: str, settings: SubscriptionSettings
    ) -> bool:
        """Create ``name`` on ``topic`` (and its dead-letter topic); False if it existed."""
        check_name("subscription", name)
        dead_letter = None
        if settings.max_delivery_attempts:
            dlq = check_name("dead-letter topic", dead_letter_name(name))
            await self.create_topic(dlq)
            # The dead-letter topic's own subscription keeps the letters Pub/Sub forwards.
            await self.create_subscription(dlq, dlq, SubscriptionSettings(max_delivery_attempts=0))
            dead_letter = DeadLetterPolicy(
                dead_letter_topic=self.opts.topic_path(dlq),
                max_delivery_attempts=settings.max_delivery_attempts,
            )
        retry = None
        if settings.retry_min_s is not None or settings.retry_max_s is not None:
            retry = RetryPolicy(
                minimum_backoff=_duration(settings.retry_min_s or 10.0),
                maximum_backoff=_duration(settings.retry_max_s or 600.0),
            )
        request = Subscription(
            name=self.opts.subscription_path(name),
            topic=self.opts.topic_path(topic),
            ack_deadline_seconds=min(600, max(10, round(settings.ack_deadline_s))),
            message_retention_duration=_duration(settings.retention_s),
            expiration_policy=ExpirationPolicy(),  # no ttl: never expires
            enable_message_ordering=settings.ordering,
            dead_letter_policy=dead_letter,
            retry_policy=retry,
        )
        try:
            await self._run(
                f"create subscription {name!r} on topic {topic!r}",
                self._sub.create_subscription,
                expected=(gexc.AlreadyExists,),
                request=request,
            )
        except gexc.AlreadyExists:
            return False
        return True

    async def list_topics(self) -> list[str]:
        pages = await self._run(
            "list topics", self._pub.list_topics, project=f"projects/{self.opts.project}"
        )
        return sorted(t.name.rsplit("/", 1)[-1] for t in pages)

    async def list_subscriptions(self) -> list[SubscriptionInfo]:
        def every(**kwargs: Any) -> list[Any]:
            return list(self._sub.list_subscriptions(**kwargs))

        subs = await self._run("list subscriptions", every, project=f"projects/{self.opts.project}")
        return sorted((_info(s) for s in subs), key=lambda s: s.name)

    async def topic_subscriptions(self, topic: str) -> list[str]:
        """Short names of the subscriptions attached to ``topic``."""

        def every(**kwargs: Any) -> list[str]:
            return list(self._pub.list_topic_subscriptions(**kwargs))

        paths = await self._run(
            f"list subscriptions of topic {topic!r}", every, topic=self.opts.topic_path(topic)
        )
        return [p.rsplit("/", 1)[-1] for p in paths]

    async def delete_subscription(self, name: str) -> None:
        path = self.opts.subscription_path(name)
        with contextlib.suppress(gexc.NotFound):
            await self._run(
                f"delete subscription {name!r}",
                self._sub.delete_subscription,
                expected=(gexc.NotFound,),
                subscription=path,
            )

    async def delete_topic(self, topic: str) -> None:
        with contextlib.suppress(gexc.NotFound):
            await self._run(
                f"delete topic {topic!r}",
                self._pub.delete_topic,
                expected=(gexc.NotFound,),
                topic=self.opts.topic_path(topic),
            )


def _duration(seconds: float) -> dict[str, int]:
    return {"seconds": int(seconds), "nanos": int((seconds % 1) * 1e9)}


def _info(sub: Subscription) -> SubscriptionInfo:
    policy = sub.dead_letter_policy
    dlq = policy.dead_letter_topic.rsplit("/", 1)[-1] if policy.dead_letter_topic else None
    retention = sub.message_retention_duration
    return SubscriptionInfo(
        name=sub.name.rsplit("/", 1)[-1],
        topic=sub.topic.rsplit("/", 1)[-1],
        ack_deadline_s=sub.ack_deadline_seconds,
        dead_letter_topic=dlq,
        max_delivery_attempts=policy.max_delivery_attempts if dlq else 0,
        retention_s=int(retention.total_seconds()) if retention else 0,
        ordering=sub.enable_message_ordering,
    )
