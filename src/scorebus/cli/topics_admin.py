"""The Pub/Sub work behind ``scorebus topics`` and ``scorebus run --create``.

Apart from :mod:`.topics` (the typer commands: flags in, lines and tables out)
because this is what those commands do to Pub/Sub, with no terminal in sight:
tell a Pub/Sub URL from another broker's, refuse flag combinations Pub/Sub would
refuse, create a topic and subscription with their policies, list them, and
create everything an app needs exactly as the broker would on first use.
Each function returns the lines or data to print; the caller prints them.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any, cast

from ..app import App, Settings
from ..brokers import open_broker
from ..errors import ConfigError
from .common import redact

if TYPE_CHECKING:
    from ..brokers.pubsub import PubSubBroker
    from ..brokers.pubsub.admin import SubscriptionInfo, SubscriptionSettings

_PUBSUB = "pubsub://"


def is_pubsub(url: str) -> bool:
    return url.startswith(_PUBSUB)


def require_pubsub(url: str) -> None:
    """Raise ConfigError unless ``url`` is a Pub/Sub broker's."""
    if not is_pubsub(url):
        raise ConfigError(
            f"`scorebus topics` manages Google Cloud Pub/Sub (--broker pubsub://PROJECT); "
            f"{redact(url)} creates its topics and subscriptions on first use (`scorebus run`)"
        )


def _pubsub(url: str) -> PubSubBroker:
    """The Pub/Sub broker at ``url`` (the caller closes it).

    Raises:
        ConfigError: ``url`` is another broker's (which creates topics on first use).
        ImportError: google-cloud-pubsub is missing (the message names the pip extra).
    """
    require_pubsub(url)
    return cast("PubSubBroker", open_broker(url))


def describe(info: SubscriptionInfo) -> str:
    """One line on a subscription's policies, as ``topics create`` and ``run --create`` print it."""
    dead = (
        f"dead-letter to {info.dead_letter_topic!r} after {info.max_delivery_attempts} attempts"
        if info.dead_letter_topic
        else "no dead-letter policy"
    )
    return f"on topic {info.topic!r}: ack deadline {info.ack_deadline_s} s, {dead}"


def _settings(
    broker: PubSubBroker,
    *,
    ack_deadline: float,
    max_delivery_attempts: int | None,
    min_backoff: float | None,
    max_backoff: float | None,
) -> SubscriptionSettings:
    from ..brokers.pubsub.admin import SubscriptionSettings

    opts = broker.opts
    return SubscriptionSettings(
        ack_deadline_s=ack_deadline,
        max_delivery_attempts=(
            opts.max_delivery_attempts if max_delivery_attempts is None else max_delivery_attempts
        ),
        retention_s=opts.retention_s,
        ordering=opts.ordering,
        retry_min_s=min_backoff,
        retry_max_s=max_backoff,
    )


def check_create_flags(
    subscription: str | None,
    *,
    ack_deadline: float | None,
    dead_letter_topic: str | None,
    max_delivery_attempts: int | None,
    min_backoff: float | None,
    max_backoff: float | None,
) -> None:
    """Raise ConfigError on a combination of flags Pub/Sub would refuse or scorebus cannot do."""
    given = {
        "--ack-deadline": ack_deadline,
        "--dead-letter-topic": dead_letter_topic,
        "--max-delivery-attempts": max_delivery_attempts,
        "--min-backoff": min_backoff,
        "--max-backoff": max_backoff,
    }
    if subscription is None:
        named = [flag for flag, value in given.items() if value is not None]
        if named:
            raise ConfigError(
                f"{', '.join(named)} set a subscription's policy: add --subscription NAME"
            )
        return
    if max_delivery_attempts is not None and 0 < max_delivery_attempts < 5:
        raise ConfigError(
            f"--max-delivery-attempts {max_delivery_attempts}: Pub/Sub allows 5-100 (0: no policy)"
        )
    if dead_letter_topic is not None:
        from ..brokers.pubsub.admin import dead_letter_name

        if max_delivery_attempts == 0:
            raise ConfigError("--dead-letter-topic with --max-delivery-attempts 0: choose one")
        if dead_letter_topic != dead_letter_name(subscription):
            raise ConfigError(
                f"--dead-letter-topic {dead_letter_topic!r}: scorebus dead-letters subscription "
                f"{subscription!r} to {dead_letter_name(subscription)!r} (and keeps a "
                "subscription of that name on it); another topic is not supported yet"
            )
    if min_backoff == 0:
        # admin.SubscriptionSettings reads a zero minimum as "not given" (10 s).
        raise ConfigError("--min-backoff 0 is not supported yet: give 0.1 or more")
    if min_backoff is not None and max_backoff is not None and min_backoff > max_backoff:
        raise ConfigError(f"--min-backoff {min_backoff} is more than --max-backoff {max_backoff}")


async def create_topic(
    url: str,
    topic: str,
    subscription: str | None,
    *,
    ack_deadline: float,
    max_delivery_attempts: int | None,
    min_backoff: float | None,
    max_backoff: float | None,
) -> list[str]:
    lines = []
    async with _pubsub(url) as broker:
        admin = broker.admin
        created = await admin.create_topic(topic)
        lines.append(f"{'created' if created else 'kept existing'} topic {topic!r}")
        if subscription is None:
            lines.append(
                "note: Pub/Sub keeps nothing published to a topic without subscriptions "
                "(scorebus's own publishes are held for the first one)"
            )
            return lines
        existing = await admin.subscription(subscription)
        if existing is not None and existing.topic != topic:
            raise ConfigError(
                f"subscription {subscription!r} already exists on topic {existing.topic!r}, "
                f"not {topic!r}"
            )
        wanted = _settings(
            broker,
            ack_deadline=ack_deadline,
            max_delivery_attempts=max_delivery_attempts,
            min_backoff=min_backoff,
            max_backoff=max_backoff,
        )
        created = await admin.create_subscription(subscription, topic, wanted)
        info = await admin.subscription(subscription)
        if info is None:
            raise ConfigError(f"subscription {subscription!r} vanished right after it was created")
        if created:
            retry = ""
            if min_backoff is not None or max_backoff is not None:
                retry = f", retry backoff {min_backoff or 10.0:g}-{max_backoff or 600.0:g} s"
            lines.append(f"created subscription {subscription!r} {describe(info)}{retry}")
        else:
            lines.append(
                f"kept existing subscription {subscription!r} {describe(info)} "
                "(change it with `gcloud pubsub subscriptions update`)"
            )
    return lines


async def list_topics(url: str) -> dict[str, Any]:
    async with _pubsub(url) as broker:
        topics = await broker.admin.list_topics()
        subs = await broker.admin.list_subscriptions()
    return {
        "broker": redact(url),
        "topics": topics,
        "subscriptions": [asdict(s) for s in subs],
    }


async def create_app_topics(app: App, cfg: Settings) -> list[str]:
    """Create every topic and subscription ``app`` uses on Pub/Sub; lines to print.

    Each subscription is created by the broker's own ``subscription()``, exactly
    as ``scorebus run`` would on first use (the URL's dead-letter policy,
    retention and ordering; the scorer's or handler's ack deadline), and each
    ``publish=`` topic is created too. An app whose ``RetryPolicy.max_attempts``
    is more than an existing subscription's dead-letter ``max_delivery_attempts``
    gets a warning: Pub/Sub would forward such a message to the dead-letter topic
    before scorebus gives up on it, so ``scorebus dlq`` would not list it.

    Other brokers create topics and subscriptions on first use: nothing to do.
    """
    if not is_pubsub(cfg.broker):
        return [f"--create: {redact(cfg.broker)} creates topics and subscriptions on first use"]
    wanted = [
        (s.topic, s.subscription, s.ack_deadline_s, s.retry.max_attempts) for s in app.scorers
    ] + [(h.topic, h.subscription, h.ack_deadline_s, h.retry.max_attempts) for h in app.handlers]
    lines = []
    async with _pubsub(cfg.broker) as broker:
        for topic, name, ack_deadline_s, max_attempts in wanted:
            await broker.subscription(
                topic, name, ack_deadline_s=cfg.ack_deadline_s or ack_deadline_s
            )
            info = await broker.admin.subscription(name)
            if info is None:
                raise ConfigError(f"subscription {name!r} vanished right after it was created")
            lines.append(f"subscription {name!r} {describe(info)}")
            if info.dead_letter_topic and max_attempts > info.max_delivery_attempts:
                lines.append(
                    f"warning: {name!r}: Pub/Sub dead-letters after {info.max_delivery_attempts} "
                    f"deliveries, before the app's RetryPolicy(max_attempts={max_attempts}); "
                    "those letters reach the dead-letter topic but not `scorebus dlq`"
                )
        for topic in sorted({s.publish for s in app.scorers if s.publish}):
            created = await broker.admin.create_topic(topic)
            lines.append(f"{'created' if created else 'kept existing'} output topic {topic!r}")
    return lines
