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

The Pub/Sub work behind these commands lives in :mod:`.topics_admin`.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Table

from .common import BrokerOpt, JsonOpt, err, out, print_json, settings
from .topics_admin import check_create_flags, create_topic, list_topics, require_pubsub
from .topics_admin import create_app_topics as create_app_topics  # cli/ops.py imports it here
from .topics_admin import describe as describe

topics_app = typer.Typer(
    help="Create and list Google Cloud Pub/Sub topics and subscriptions with their policies.",
    no_args_is_help=True,
)


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
    require_pubsub(cfg.broker)  # on another broker, say so before judging the flags
    check_create_flags(
        subscription,
        ack_deadline=ack_deadline,
        dead_letter_topic=dead_letter_topic,
        max_delivery_attempts=max_delivery_attempts,
        min_backoff=min_backoff,
        max_backoff=max_backoff,
    )
    lines = asyncio.run(
        create_topic(
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


@topics_app.command("list")
def list_(json_out: JsonOpt = False, broker: BrokerOpt = None) -> None:
    """Topics and subscriptions of the project, with each subscription's policies."""
    cfg = settings(broker)
    data = asyncio.run(list_topics(cfg.broker))
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
