"""Figures and housekeeping: what MQTT cannot list, gathered from what scorebus keeps.

``stats`` counts, per subscription in the register: the events parked on this
host (pending, or leased by any process of the host), what this broker's own member holds (after a barrier, so everything
Mosquitto routed to it is in), and what the idle sessions of this host hold
(read by connecting as each and disconnecting without acking). It cannot see
what members in other processes hold, nor sessions of other hosts, and
``acked`` counts only this broker's own acks: Mosquitto keeps no such figures.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import msgspec

from ...errors import BrokerUnavailable
from ...events import Event
from ...events.codec import format_time, parse_time
from ..base import DeadLetter, Delivery, Subscription, SubscriptionStats
from ._link import Link
from ._sessions import IdleSession, client_id
from ._slots import Slot
from ._wire import Outgoing

if TYPE_CHECKING:
    from .broker import MqttBroker

log = logging.getLogger(__name__)


async def stats(broker: MqttBroker) -> list[SubscriptionStats]:
    """Best-effort figures of every subscription of the prefix (see the module docstring)."""
    await broker.control.barrier()
    parked = await broker.state.parked_counts()
    out = []
    for name, (topic, _) in sorted(broker.registry.subs.items()):
        pending = sum(ready for (sub, _), (ready, _) in parked.items() if sub == name)
        in_flight = sum(leased for (sub, _), (_, leased) in parked.items() if sub == name)
        acked = 0
        member = broker.member(name)
        if member is not None:
            p, f = await member.local_stats()
            pending, in_flight, acked = pending + p, in_flight + f, member.acked
        for slot in Slot.idle(broker.opts.state, broker.opts.digest(name)):
            session = IdleSession(broker, topic, name, slot)
            try:
                await session.open(detach=False)
                pending += await session.count()
            except BrokerUnavailable as exc:
                log.warning("stats of %s: an idle session could not be read: %s", name, exc)
            finally:
                await session.link.close()
                slot.release()
        out.append(
            SubscriptionStats(
                subscription=name,
                topic=topic,
                pending=pending,
                in_flight=in_flight,
                acked=acked,
                dead_lettered=await broker.store.count(name),
            )
        )
    for (sub, topic), (n, _) in sorted(parked.items(), key=lambda kv: kv[0][1]):
        if sub is None:
            out.append(SubscriptionStats.unclaimed(topic, n))
    return out


async def purge(broker: MqttBroker) -> None:
    """Delete the idle sessions of this host, the register and the parked events."""
    opts = broker.opts
    await broker.control.barrier()
    markers = []
    for name in list(broker.registry.subs):
        for slot in Slot.idle(opts.state, opts.digest(name)):
            await Link(opts, client_id(opts, name, slot.index)).end_session()
            slot.mark(False)
            slot.release()
        markers.append(Outgoing(opts.sub_marker(name), b"", retain=True))
        for cid in broker.registry.live.get(name, ()):
            markers.append(Outgoing(opts.live_marker(name, cid), b"", retain=True))
    await broker.send(markers)
    await broker.state.purge()


def event_of(dl: DeadLetter) -> Event:
    """The event a dead letter was made from (attributes as the subscription stored them)."""
    attrs = dict(dl.attributes)
    core = {
        k: attrs.pop(k, None)
        for k in ("id", "type", "source", "subject", "time", "datacontenttype")
    }
    return Event(
        id=core["id"] or dl.event_id,
        type=core["type"] or dl.event_type,
        source=core["source"] or "unknown",
        time=parse_time(core["time"]) if core["time"] else dl.dead_at,
        data=dl.payload,
        datacontenttype=core["datacontenttype"] or "application/json",
        subject=core["subject"],
        extensions=attrs,
    )


def enveloped(d: Delivery, sub: Subscription) -> Delivery:
    """The delivery as the dead-letter store should keep it (the inverse of :func:`event_of`).

    The store keeps CloudEvents attributes; time and content type ride along as
    attributes so that a replay restores them.
    """
    e = d.event
    ext = {**e.extensions, "time": format_time(e.time), "datacontenttype": e.datacontenttype}
    return Delivery(
        msgspec.structs.replace(e, extensions=ext), attempt=d.attempt, handle=None, subscription=sub
    )
