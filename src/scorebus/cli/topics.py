"""``scorebus topics create|list`` and ``scorebus run --create``: Pub/Sub topics and subscriptions.

On Google Cloud Pub/Sub a subscription's policies are fixed when it is created:
its ack deadline, its dead-letter policy (a topic Pub/Sub forwards a message to
after N failed deliveries) and its retry policy (the redelivery backoff after a
nack). ``topics create`` creates a topic and, optionally, a subscription with
those policies, through the broker's :mod:`~scorebus.brokers.pubsub.admin`;
``run --create`` creates every topic and subscription an app needs, with the
settings the broker itself uses on first use, and prints their policies.
Existing topics and subscriptions are left as they are.

Other brokers (the embedded SQLite broker, Redis, NATS, RabbitMQ, MQTT) create
topics and subscriptions on first use and have no policies to set this way:
``topics`` says so in one line, ``run --create`` has nothing to do.

Examples::

    scorebus topics create transactions --subscription fraud.score \\
        --ack-deadline 30 --max-delivery-attempts 5 --min-backoff 1 --max-backoff 60 \\
        --broker 'pubsub://my-project?emulator=127.0.0.1:8085'
    scorebus topics list --json --broker pubsub://my-project
    scorebus run fraud_app:app --create --broker pubsub://my-project
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.table import Table

from ..app import App, Settings
from ..brokers import open_broker
from ..errors import ConfigError
from .common import BrokerOpt, JsonOpt, err, out, print_json, redact, settings

if TYPE_CHECKING:
    from ..brokers.pubsub import PubSubBroker
    from ..brokers.pubsub.admin import SubscriptionInfo, SubscriptionSettings

topics_app = typer.Typer(
    help="Create and list Google Cloud Pub/Sub topics and subscriptions with their policies.",
    no_args_is_help=True,
)

_PUBSUB = "pubsub://"


def _is_pubsub(url: str) -> bool:
    return url.startswith(_PUBSUB)


def _require_pubsub(url: str) -> None:
    """Raise ConfigError unless ``url`` is a Pub/Sub broker's."""
    if not _is_pubsub(url):
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
    _require_pubsub(url)
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


def _check_create_flags(
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


async def _create(
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


@topics_app.command("create")
def create(
    topic: Annotated[str, typer.Argument(help="Topic to create (an existing one is kept).")],
    subscription: Annotated[
        str | None,
        typer.Option(
            "--subscription", "-s", help="Also create this subscription (an app's: APP.SCORER)."
        ),
    ] = None,
    ack_deadline: Annotated[
        float | None,
        typer.Option(
            "--ack-deadline", min=10, max=600, help="Ack deadline in seconds (10-600; default 60)."
        ),
    ] = None,
    dead_letter_topic: Annotated[
        str | None,
        typer.Option(
            "--dead-letter-topic",
            help="Dead-letter topic; scorebus uses SUBSCRIPTION.dead-letter (the default).",
        ),
    ] = None,
    max_delivery_attempts: Annotated[
        int | None,
        typer.Option(
            "--max-delivery-attempts",
            min=0,
            max=100,
            help="Forward to the dead-letter topic after this many deliveries (5-100, 0: no "
            "policy; default: the URL's max_delivery_attempts, 100).",
        ),
    ] = None,
    min_backoff: Annotated[
        float | None,
        typer.Option(
            "--min-backoff", min=0, max=600, help="Retry policy: least redelivery delay, seconds."
        ),
    ] = None,
    max_backoff: Annotated[
        float | None,
        typer.Option(
            "--max-backoff", min=0, max=600, help="Retry policy: most redelivery delay, seconds."
        ),
    ] = None,
    broker: BrokerOpt = None,
) -> None:
    """Create a Pub/Sub topic and, with --subscription, a subscription with its policies."""
    cfg = settings(broker)
    _require_pubsub(cfg.broker)  # on another broker, say so before judging the flags
    _check_create_flags(
        subscription,
        ack_deadline=ack_deadline,
        dead_letter_topic=dead_letter_topic,
        max_delivery_attempts=max_delivery_attempts,
        min_backoff=min_backoff,
        max_backoff=max_backoff,
    )
    lines = asyncio.run(
        _create(
            cfg.broker,
            topic,
            subscription,
            ack_deadline=60.0 if ack_deadline is None else ack_deadline,
            max_delivery_attempts=max_delivery_attempts,
            min_backoff=min_backoff,
            max_backoff=max_backoff,
        )
    )
    for line in lines:
        err.print(line, highlight=False, soft_wrap=True)


async def _list(url: str) -> dict[str, Any]:
    async with _pubsub(url) as broker:
        topics = await broker.admin.list_topics()
        subs = await broker.admin.list_subscriptions()
    return {
        "broker": redact(url),
        "topics": topics,
        "subscriptions": [asdict(s) for s in subs],
    }


@topics_app.command("list")
def list_(json_out: JsonOpt = False, broker: BrokerOpt = None) -> None:
    """Topics and subscriptions of the project, with each subscription's policies."""
    cfg = settings(broker)
    data = asyncio.run(_list(cfg.broker))
    if json_out:
        print_json(data)
        return
    table = Table(title=data["broker"])
    for col in ("subscription", "topic", "ack deadline s", "dead-letter topic", "max attempts"):
        table.add_column(col, overflow="fold")
    for s in data["subscriptions"]:
        table.add_row(
            s["name"],
            s["topic"],
            str(s["ack_deadline_s"]),
            s["dead_letter_topic"] or "-",
            str(s["max_delivery_attempts"] or "-"),
        )
    out.print(table)
    lonely = sorted(set(data["topics"]) - {s["topic"] for s in data["subscriptions"]})
    if lonely:
        out.print(
            f"topics without subscriptions: {', '.join(lonely)}", highlight=False, soft_wrap=True
        )


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
    if not _is_pubsub(cfg.broker):
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
