"""A subscription member: one MQTT session in the subscription's shared group.

The member subscribes (QoS 1, persistent session) to ``$share/NAME/PREFIX/TOPIC``
and ``$share/NAME/_scorebus/PREFIX/q/NAME`` (copies for this subscription
alone), so the members of all worker processes share the work. Messages stay
unacked at Mosquitto (manual PUBACK) while the lease is kept here (:mod:`._held`):
``pull`` leases for ``ack_deadline_s`` (a lease that runs out makes the message
available again here: MQTT never redelivers to a connected client); ``ack``
PUBACKs (a stale delivery is ignored); ``nack(delay)`` republishes a copy with
its attempt count to the queue topic after the delay and PUBACKs the original
once Mosquitto has the copy; ``dead_letter`` writes the store, then PUBACKs.
Events parked on this host (:mod:`._local`) are served first. Leaving the
group on ``close`` (hand-off, or parking by the last member) is :mod:`._leave`.

The attempt number is the largest of the count carried by the copy
(``sb-attempts``), the leases this member made, and the host's lease table,
so a worker that dies holding a message does not reset its count.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from paho.mqtt.client import MQTTMessage

from ...errors import BrokerUnavailable, ScorebusError
from ..base import Delivery
from . import _admin, _sessions
from ._held import NACKED, Held, HeldMessages
from ._leave import leave_group
from ._link import Link
from ._local import POLL_S, LocalQueue, ParkedHandle, parked_of
from ._reaper import Reaper
from ._slots import Slot
from ._wire import from_message

if TYPE_CHECKING:
    from .broker import MqttBroker

log = logging.getLogger(__name__)


class MqttSubscription:
    """One member of a subscription's shared group; see the module docstring."""

    def __init__(self, broker: MqttBroker, topic: str, name: str, ack_deadline_s: float) -> None:
        self.topic = topic
        self.name = name
        self.ack_deadline_s = ack_deadline_s
        self.acked = 0
        self.reaper = Reaper(broker, topic, name)
        self.client_id = ""
        self._broker = broker
        self._opts = broker.opts
        self._held = HeldMessages()
        self._nacks: set[asyncio.Task[None]] = set()  # copies waiting out their delay
        self._local = LocalQueue(broker, name, self._held.poke)
        self._closed = False
        self._slot: Slot | None = None
        self._link: Link | None = None

    @property
    def link(self) -> Link:
        assert self._link is not None, "the subscription is not started"
        return self._link

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Claim a free slot on this host, connect its session and announce it live."""
        o = self._opts
        self._slot = slot = Slot.claim(o.state, o.digest(self.name))
        self.client_id = cid = _sessions.client_id(o, self.name, slot.index)
        link = self._link = Link(
            o,
            cid,
            persistent=True,
            manual_ack=True,
            on_message=self._on_message,
            will=o.live_marker(self.name, cid),
            receive_max=o.inflight,
        )
        link.filters = _sessions.group_filters(o, self.topic, self.name)
        link.on_lost = self._on_lost
        self._local.ack_mqtt = link.ack
        link.on_reconnect = self._announce
        try:
            await link.end_session()  # a free slot: no stale session may hand us old copies
            slot.mark(True)
            await link.open()
            await self._announce()
        except BaseException:
            await link.close(end_session=True)
            slot.mark(False)
            slot.release()
            raise

    async def _announce(self) -> None:
        # The register entry too: a Mosquitto restarted without persistence lost it.
        registry = self._broker.registry
        await self.link.publish(
            [
                registry.sub_marker(self.name, self.topic),
                registry.live_marker(self.name, self.client_id, live=True),
            ]
        )

    async def close(self) -> None:
        """Leave the group: hand held messages to live members, or stay as the anchor.

        See :mod:`._leave` for why the last member parks what it holds first.
        """
        if self._closed or self._link is None or self._slot is None:
            return
        self._closed = True
        for task in list(self._nacks):
            task.cancel()
        await self.reaper.close()
        await self._local.drain()
        await leave_group(
            self._broker, self.topic, self.name, self.client_id, self._link, self._slot, self._held
        )

    def parked_arrived(self) -> None:
        """Events were parked for this subscription: look at once."""
        self._local.arrived()

    def _on_message(self, msg: MQTTMessage) -> None:
        inc = from_message(self._opts, msg)
        if self._opts.spool:
            self._local.spool(inc, msg.mid, self.link.epoch)
        else:
            self._held.add(msg.mid, self.link.epoch, inc.event, inc.attempts, inc.origin)

    def _on_lost(self) -> None:
        # Mosquitto resends everything unacked on the next connection.
        for task in list(self._nacks):
            task.cancel()
        self._held.clear()
        self._local.drop_inbox()

    # ------------------------------------------------------------ leasing

    async def pull(self, max_messages: int, timeout_s: float) -> list[Delivery]:
        if self.reaper.due():
            self.reaper.soon()
            self._broker.parking.kick()
        give_up = time.monotonic() + timeout_s
        while True:
            out = await self._local.lease(self, max_messages, self.ack_deadline_s)
            room = max_messages - len(out)
            if room > 0:
                wait = 0.0 if out else min(POLL_S, max(0.0, give_up - time.monotonic()))
                out += await self._lease(await self._held.take(room, wait, self.ack_deadline_s))
            if out or time.monotonic() >= give_up:
                return out

    async def _lease(self, taken: list[Held]) -> list[Delivery]:
        if not taken:
            return []
        try:
            counted = await self._broker.state.lease(
                self.name, [(h.event.id, h.prior) for h in taken]
            )
        except ScorebusError as exc:
            log.warning("subscription %s: lease counts not recorded: %s", self.name, exc)
            counted = [0] * len(taken)
        out = []
        for h, n in zip(taken, counted, strict=True):
            h.attempt = max(n, h.prior + h.leases)
            out.append(
                Delivery(
                    h.event,
                    attempt=h.attempt,
                    handle=(h.seq, h.token),
                    subscription=self,
                    deadline=h.visible_at,
                )
            )
        return out

    def _current(self, deliveries: Sequence[Delivery]) -> list[Held]:
        return [
            h
            for d in deliveries
            if not isinstance(d.handle, ParkedHandle) and (h := self._held.current(d.handle))
        ]

    async def _settled(self, held: Sequence[Held]) -> None:
        for h in held:
            self.link.ack(h.mid, h.epoch)
            self._held.remove(h)
        try:
            await self._broker.state.settle(self.name, [h.event.id for h in held])
        except ScorebusError as exc:
            log.warning("subscription %s: lease counts not cleared: %s", self.name, exc)

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        held = self._current(deliveries)
        if held:
            self.acked += len(held)
            await self._settled(held)
        self.acked += await self._local.ack(parked_of(deliveries))

    async def nack(self, deliveries: Sequence[Delivery], delay_s: float = 0.0) -> None:
        await self._local.delay(parked_of(deliveries), time.time() + max(0.0, delay_s))
        held = self._current(deliveries)
        if not held:
            return
        for h in held:
            h.state, h.visible_at = NACKED, time.time() + max(0.0, delay_s)
        if delay_s <= 0:
            await self._requeue(held)
            return
        task = asyncio.create_task(self._requeue(held, delay_s))
        self._nacks.add(task)
        task.add_done_callback(self._nacks.discard)

    async def _requeue(self, held: list[Held], delay_s: float = 0.0) -> None:
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        held = [h for h in held if self._held.holds(h)]
        if not held:
            return
        try:
            await self._broker.hand_to(self.name, [(h.event, h.attempt, h.origin) for h in held])
        except BrokerUnavailable as exc:
            # Mosquitto still holds the originals: serve them from here again.
            log.warning("subscription %s: nack copy not published (%s); kept here", self.name, exc)
            self._held.requeue(held)
            return
        await self._settled(held)

    async def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        at = time.time() + max(0.0, seconds)
        await self._local.delay(parked_of(deliveries), at)
        for d in deliveries:
            if isinstance(d.handle, ParkedHandle):
                d.deadline = at
            elif (h := self._held.current(d.handle)) is not None:
                self._held.lease_until(h, at)
                d.deadline = at

    async def dead_letter(self, items: Sequence[tuple[Delivery, str, str]]) -> None:
        parked = parked_of([d for d, _, _ in items])
        live = await self._broker.state.still_leased(parked) if parked else set()
        by_origin: dict[str, list[tuple[Delivery, str, str]]] = {}
        held = []
        for d, reason, error in items:
            if isinstance(d.handle, ParkedHandle):
                if d.handle.seq not in live:
                    continue
                origin = d.handle.topic
            else:
                h = self._held.current(d.handle)
                if h is None:
                    continue
                held.append(h)
                origin = h.origin
            by_origin.setdefault(origin, []).append((_admin.enveloped(d, self), reason, error))
        for origin, group in by_origin.items():
            await self._broker.store.add(origin, self.name, group)
        if held:
            await self._settled(held)
        await self._local.ack([p for p in parked if p[0] in live])

    async def local_stats(self) -> tuple[int, int]:
        """(pending, in flight) of what this member holds, after a barrier."""
        if self.link.connected.is_set():
            await self.link.barrier()
        return self._held.counts()
