"""Messages published to a topic before any subscription exists.

Pub/Sub drops them; the embedded broker keeps them for the first subscription,
and ``scorebus publish`` before ``scorebus run`` must lose nothing on either.
So when scorebus publishes to a topic without subscriptions it first creates a
holding subscription ``<topic>.scorebus-unclaimed`` (7-day retention), and the
first real subscription created through scorebus *adopts* its messages: they
are pulled, republished to the topic with the same data and attributes (so the
same event ids) plus ``scorebus-for=<subscription>``, which every other
subscription of the topic acks and drops, acked on the holding subscription,
and the holding subscription is deleted.

This is a copy, not a move: Pub/Sub cannot move messages between
subscriptions, and seeking a new subscription to a snapshot of the holding one
restores only messages published after the new one existed. Each message is
acked only after its copy is published, so a crash in between gives a
duplicate (absorbed by the idempotent sink), never a loss; adopted messages
land after anything published while the adoption ran. Messages published by
other tools before any subscription exists are still dropped by Pub/Sub.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from .admin import Admin, SubscriptionSettings
from .binding import FOR, Sized, build
from .options import check_name
from .rpc import AcknowledgeRequest, PullRequest, Rpc

log = logging.getLogger(__name__)

HOLDING_SUFFIX = ".scorebus-unclaimed"
Send = Callable[[str, list[Sized]], Awaitable[None]]


def holding_name(topic: str) -> str:
    return topic + HOLDING_SUFFIX


async def keep_unclaimed(admin: Admin, topic: str) -> bool:
    """Before publishing: True once ``topic`` has a real subscription (cache that)."""
    holding = holding_name(topic)
    subs = await admin.topic_subscriptions(topic)
    if any(s != holding for s in subs):
        return True
    if not subs:
        await admin.create_subscription(
            check_name("subscription", holding),
            topic,
            SubscriptionSettings(max_delivery_attempts=0),
        )
    return False


async def adopt_unclaimed(rpc: Rpc, admin: Admin, send: Send, topic: str, name: str) -> int:
    """Hand the holding subscription's messages to subscription ``name``; returns how many."""
    holding = holding_name(topic)
    if await admin.subscription(holding) is None:
        return 0
    path = rpc.opts.subscription_path(holding)
    what = f"adopting subscription {holding!r}"
    adopted, empty = 0, 0
    # Two empty pulls in a row: Pub/Sub may answer one pull empty while messages remain.
    while empty < 2:
        response = await rpc.call(
            "pull",
            PullRequest(subscription=path, max_messages=1000),
            timeout=1.5,  # the emulator answers an empty pull ~1 s before the deadline
            what=what,
            empty_on_deadline=True,
        )
        received = list(response.received_messages) if response is not None else []
        if not received:
            empty += 1
            continue
        empty = 0
        copies = []
        for rm in received:
            attrs = dict(rm.message.attributes)
            if FOR not in attrs:  # not one of our own copies, which acking drops
                copies.append(build(rm.message.data, {**attrs, FOR: name}, rm.message.ordering_key))
        if copies:
            await send(topic, copies)
            adopted += len(copies)
        await rpc.call(
            "acknowledge",
            AcknowledgeRequest(subscription=path, ack_ids=[rm.ack_id for rm in received]),
            timeout=30,
            what=what,
        )
    await admin.delete_subscription(holding)
    log.info("subscription=%s adopted %d unclaimed messages of topic %s", name, adopted, topic)
    return adopted
