"""The MQTT broker: publish, subscriptions, stats, dead letters and replay.

A scorebus topic ``T`` is the MQTT topic ``PREFIX/T``; a subscription ``S`` is
the shared subscription ``$share/S/PREFIX/T`` at QoS 1 with persistent
sessions (see :mod:`.subscription`). What MQTT lacks, scorebus adds:

- a register of subscriptions and live members (retained messages, see
  :mod:`._registry`), so a publisher knows where an event can go;
- parking: an event for a subscription with no live member (or for a topic
  with no subscription yet) waits in the host's SQLite ``state.db`` instead of
  being dropped by Mosquitto or cut at its ``max_queued_messages``, and is
  handed over when a member starts (the first subscription created on a topic
  adopts what was published before it);
- leases, nack with delay, attempt counts (:mod:`.subscription`);
- dead letters in scorebus's own store, replayed by republishing.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence

from paho.mqtt.client import MQTTMessage

from ...errors import BrokerUnavailable, ConfigError
from ...events import Event
from ..base import DeadLetter, SubscriptionStats
from ..dlq_store import DeadLetterStore
from . import _admin
from ._link import Link
from ._options import MqttOptions, check_name, check_topic, parse_url
from ._parking import Parking
from ._pubacks import LinkLost
from ._registry import Registry
from ._state import LocalState
from ._wire import Outgoing, encode, prepared
from .subscription import MqttSubscription

log = logging.getLogger(__name__)

HAND_BATCH = 250  # copies per round trip when handing events to a subscription


class MqttBroker:
    """Events over an MQTT broker (Mosquitto). Use as an async context manager.

    Args:
        url: ``mqtt://[user:pass@]host[:port][?options]``; see
            ``docs/connectors/mqtt.md`` for the options.

    Raises:
        ConfigError: a bad URL or option (at construction).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.opts: MqttOptions = parse_url(url)
        self.registry = Registry(self.opts)
        self.state = LocalState(self.opts.state)
        self.store = DeadLetterStore(self.opts.dlq)
        self._control: Link | None = None
        self._view = asyncio.Event()
        self._subs: dict[str, MqttSubscription] = {}
        self.parking = Parking(self)
        self._opening: asyncio.Lock | None = None

    async def __aenter__(self) -> MqttBroker:
        await self._ready()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def member(self, name: str) -> MqttSubscription | None:
        """This broker's member of subscription ``name``, if it has joined it."""
        return self._subs.get(name)

    @property
    def control(self) -> Link:
        assert self._control is not None, "the broker is not open"
        return self._control

    async def _ready(self) -> None:
        """Connect the control link and load the register (once)."""
        if self._control is not None:
            give_up = time.monotonic() + self.opts.retry_s
            while not self._view.is_set():
                await self._control.wait_connected()
                if not await self._reload() and time.monotonic() > give_up:
                    raise BrokerUnavailable(f"the MQTT broker at {self.opts.where} does not answer")
            await self._control.wait_connected()
            return
        self._opening = self._opening or asyncio.Lock()
        async with self._opening:
            if self._control is not None:
                return
            link = Link(self.opts, f"sb-ctl-{self.opts.node}-{uuid.uuid4().hex[:10]}")
            link.filters = [self.opts.registry()]
            link.on_message = self._on_control
            link.on_lost = self._on_control_lost
            link.on_reconnect = self._reload
            await link.open()
            self._control = link
        await self._ready()

    async def _view_now(self) -> None:
        """Return connected, with the register loaded.

        Nothing is awaited after the check, so the caller reads a whole register
        (a lost connection empties it until it is reloaded).
        """
        while True:
            await self._ready()
            if self._view.is_set() and self.control.connected.is_set():
                return

    def _on_control(self, msg: MQTTMessage) -> None:
        gone = self.registry.apply(msg.topic, bytes(msg.payload))
        # A member left (its will fired if it was killed): drain its session before
        # Mosquitto gives it more of the work, and drops what exceeds its queue.
        member = self._subs.get(gone) if gone else None
        if member is not None:
            member.reaper.soon()

    def _on_control_lost(self) -> None:
        # Deletions (a will firing) may be missed while disconnected: reload from scratch.
        self._view.clear()
        self.registry.reset()

    async def _reload(self) -> bool:
        """The register is whole once a barrier comes back behind its retained messages."""
        if await self.control.barrier():
            self._view.set()
        return self._view.is_set()

    async def send(self, messages: Sequence[Outgoing]) -> None:
        """Publish raw messages through the control link, riding out a reconnect for ``retry`` s."""
        give_up = time.monotonic() + self.opts.retry_s
        while True:
            await self.control.wait_connected()
            try:
                await self.control.publish(messages)
                return
            except LinkLost:
                if time.monotonic() > give_up:
                    raise

    # ------------------------------------------------------------ publishing

    async def publish(self, topic: str, events: Sequence[Event]) -> None:
        check_topic(topic, filter_ok=False)
        if not events:
            return
        events = prepared(events)
        await self._view_now()
        if self.parking.due():
            await self.parking.resolve()
            await self._view_now()
        names = self.registry.matching(topic)
        idle = [n for n in names if not self.registry.is_live(n)]
        parked: list[str | None] = [*idle] if names else [None]
        if parked:
            await self.parking.park([(topic, n, 0, e) for n in parked for e in events])
        if len(idle) < len(names):
            mqtt_topic = self.opts.topic(topic)
            messages = []
            for e in events:
                m = encode(e, v5=self.opts.v5)
                m.topic = mqtt_topic
                messages.append(m)
            await self.send(messages)

    async def hand_to(self, name: str, items: Sequence[tuple[Event, int, str]]) -> None:
        """Give ``(event, attempts so far, origin topic)`` to subscription ``name`` alone.

        Through its queue topic when a member is live, else parked on this host.
        """
        if not items:
            return
        await self._view_now()
        if self.registry.is_live(name):
            queue = self.opts.queue(name)
            messages = []
            for event, attempts, origin in items:
                m = encode(event, v5=self.opts.v5, attempts=attempts, origin=origin)
                m.topic = queue
                messages.append(m)
            member = self._subs.get(name)
            for start in range(0, len(messages), HAND_BATCH):
                if member is not None:
                    await member.reaper.calm()
                await self.send(messages[start : start + HAND_BATCH])
        else:
            await self.parking.park([(origin, name, a, e) for e, a, origin in items])

    # ------------------------------------------------------------ subscriptions

    async def subscription(
        self, topic: str, name: str, *, ack_deadline_s: float = 60.0
    ) -> MqttSubscription:
        """Join subscription ``name`` on ``topic`` (an MQTT filter: ``+`` and ``#`` allowed).

        Raises:
            ConfigError: a bad topic or name, an ack deadline outside (0, 3600], or
                ``name`` already exists on another topic.
            BrokerUnavailable: Mosquitto cannot be reached.
        """
        check_topic(topic, filter_ok=True)
        check_name(name)
        if not 0 < ack_deadline_s <= 3600:
            raise ConfigError(f"ack_deadline_s={ack_deadline_s}: must be in (0, 3600]")
        sub = self._subs.get(name)
        known: tuple[str, float] | None = None
        if sub is None:
            await self._ready()
            known = self.registry.subs.get(name)
        existing = sub.topic if sub is not None else known[0] if known is not None else None
        if existing is not None and existing != topic:
            raise ConfigError(
                f"subscription {name!r} already exists on topic {existing!r}, not {topic!r}"
            )
        if sub is not None:
            sub.ack_deadline_s = ack_deadline_s
            return sub
        if known is None:
            await self.send([self.registry.sub_marker(name, topic)])
            await self.control.barrier()
        sub = MqttSubscription(self, topic, name, ack_deadline_s)
        await sub.start()
        self._subs[name] = sub
        await self.control.barrier()  # the register now shows this member live
        # Idle sessions (a stopped anchor, a killed worker) are drained into the
        # parked events, and what was published before any subscription is adopted.
        sub.reaper.soon()
        await self.state.adopt(self.registry.first_of(), only=name)
        return sub

    # ------------------------------------------------------------ figures

    async def stats(self) -> list[SubscriptionStats]:
        """Best effort: see "stats" in ``docs/connectors/mqtt.md`` for what MQTT cannot tell."""
        await self._ready()
        return await _admin.stats(self)

    # ------------------------------------------------------------ dead letters

    async def dead_letters(
        self, *, subscription: str | None = None, limit: int = 100, include_replayed: bool = False
    ) -> list[DeadLetter]:
        return await self.store.letters(
            subscription=subscription, limit=limit, include_replayed=include_replayed
        )

    async def replay(self, ids: Sequence[int]) -> int:
        """Put dead letters back on their subscription (parked on this host), attempts reset."""
        if not ids:
            return 0
        await self._ready()
        letters = await self.store.take(ids)
        await self.parking.park(
            [(dl.topic, dl.subscription, 0, _admin.event_of(dl)) for dl in letters]
        )
        await self.store.mark_replayed([dl.id for dl in letters])
        await self._view_now()
        await self.parking.resolve()
        return len(letters)

    async def purge(self) -> None:
        """Delete every subscription of this prefix: sessions, register, parked events.

        Members of this broker leave first; sessions of other live processes are
        not touched (their slots are locked), but lose their register entry.
        """
        await self._ready()
        for sub in list(self._subs.values()):
            await sub.close()
        self._subs.clear()
        await _admin.purge(self)

    async def close(self) -> None:
        for sub in list(self._subs.values()):
            await sub.close()
        self._subs.clear()
        await self.parking.close()
        if self._control is not None:
            await self._control.close()
        await self.state.close()
        await self.store.close()
