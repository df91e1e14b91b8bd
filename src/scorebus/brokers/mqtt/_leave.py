"""A member leaving its subscription's shared group: hand off, or stay as the anchor.

Apart from :mod:`.subscription` because leaving is a protocol of its own,
run once per member under a host-wide lock, with rules the leasing code never
meets. When other members are live, this one unsubscribes, hands what it holds
to them (parked on this host when a member here can take it, else republished
to the queue topic) and ends its session. The last live member keeps its
session subscribed, so the subscription survives at Mosquitto, but parks what
it holds on the host and PUBACKs it first: Mosquitto resends at most
``max_queued_messages`` of a session's unacked messages when its client id
connects again and drops the rest, so a backlog left there would be lost.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ...errors import BrokerUnavailable, ScorebusError
from . import _sessions
from ._held import HeldMessages
from ._link import Link
from ._slots import Slot, host_lock

if TYPE_CHECKING:
    from .broker import MqttBroker

log = logging.getLogger(__name__)


async def leave_group(
    broker: MqttBroker,
    topic: str,
    name: str,
    client_id: str,
    link: Link,
    slot: Slot,
    held: HeldMessages,
) -> None:
    """Hand ``held`` to live members or park it, mark this member gone, close the link.

    A broker that is unavailable meanwhile leaves without a hand-off (logged);
    the slot is released in every case.
    """
    o, ended = broker.opts, False
    async with host_lock(Slot.folder(o.state) / f"{o.digest(name)}.close"):
        try:
            await broker.control.barrier()
            if broker.registry.others_live(name, client_id) and link.connected.is_set():
                await _hand_off(broker, topic, name, link, slot, held)
                ended = True
            elif link.connected.is_set():
                await _park_held(broker, name, link, held)
            await link.publish([broker.registry.live_marker(name, client_id, live=False)])
        except BrokerUnavailable as exc:
            log.warning("subscription %s: leaving without a hand-off: %s", name, exc)
        await link.close(end_session=ended)
        if ended:
            slot.mark(False)
    slot.release()


async def _hand_off(
    broker: MqttBroker, topic: str, name: str, link: Link, slot: Slot, held: HeldMessages
) -> None:
    o = broker.opts
    await link.unsubscribe(_sessions.group_filters(o, topic, name))
    await link.barrier()
    items = list(held)
    if items:
        rows = [(h.origin, name, max(h.prior, h.attempt), h.event) for h in items]
        if Slot.others_in_use(o.state, o.digest(name), slot.index):
            await broker.parking.park(rows)  # the members on this host take them
        else:
            await broker.hand_to(name, [(e, a, t) for t, _, a, e in rows])
        for h in items:
            link.ack(h.mid, h.epoch)
        held.clear()


async def _park_held(broker: MqttBroker, name: str, link: Link, held: HeldMessages) -> None:
    """Park what this member holds on the host, then PUBACK it (it stays the anchor)."""
    await link.barrier()  # what Mosquitto already pushed is here
    items = list(held)
    if not items:
        return
    try:
        await broker.parking.park(
            [(h.origin, name, max(h.prior, h.attempt), h.event) for h in items]
        )
    except ScorebusError as exc:
        log.warning("subscription %s: held messages left at Mosquitto: %s", name, exc)
        return
    for h in items:
        link.ack(h.mid, h.epoch)
        held.remove(h)
    await link.barrier()  # the PUBACKs reached Mosquitto before we disconnect
