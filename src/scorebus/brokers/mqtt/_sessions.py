"""Idle sessions of a subscription: counting and draining them.

Mosquitto hands each message of a shared subscription to one member session
in turn, connected or not, and an unacked message is only ever resent to the
session that holds it. So a member that stopped or was killed keeps its
messages (and, while it stays subscribed, gets its turn of new ones, up to
Mosquitto's ``max_queued_messages``) until its client id connects again.
scorebus does not wait for that: a live member on the same host drains such
an idle session: connect as it, unsubscribe it (all idle sessions first, so
none receives what another gives up), take everything it holds, park it on
the host with its attempt count (:mod:`._parking`), PUBACK, and delete the
session. The live members on the host then share the work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from paho.mqtt.client import MQTTMessage

from ._link import Link
from ._options import MqttOptions
from ._slots import Slot
from ._wire import from_message

if TYPE_CHECKING:
    from .broker import MqttBroker


def group_filters(opts: MqttOptions, topic: str, name: str) -> list[str]:
    """The shared-subscription filters of a member of ``name`` on ``topic``."""
    return [f"$share/{name}/{opts.topic(topic)}", f"$share/{name}/{opts.queue(name)}"]


def client_id(opts: MqttOptions, name: str, index: int) -> str:
    return f"sb-{opts.digest(name)}-{opts.node}-{index}"


class IdleSession:
    """The session of an idle ``slot`` (locked by the caller), opened as its client id."""

    def __init__(self, broker: MqttBroker, topic: str, name: str, slot: Slot) -> None:
        self.broker, self.topic, self.name, self.slot = broker, topic, name, slot
        self.got: list[MQTTMessage] = []
        opts = broker.opts
        self.link = Link(
            opts,
            client_id(opts, name, slot.index),
            persistent=True,
            manual_ack=True,
            on_message=self.got.append,
            receive_max=opts.inflight,
        )

    async def open(self, *, detach: bool) -> None:
        """Connect; ``detach`` unsubscribes it so it gets no more messages."""
        await self.link.open()
        if detach and self.link.session_present:
            await self.link.unsubscribe(group_filters(self.broker.opts, self.topic, self.name))

    async def count(self) -> int:
        """How many messages it holds (left there, unacked)."""
        if not self.link.session_present:
            await self.close(end=True)
            return 0
        await self.link.barrier()
        await self.close(end=False)
        return len(self.got)

    async def move(self) -> int:
        """Park everything it holds for the live members on this host, then delete it."""
        if self.link.session_present:
            await self.link.barrier()
        if self.got:
            b = self.broker
            incoming = [from_message(b.opts, m) for m in self.got]
            counted = await b.state.leased(self.name, [i.event.id for i in incoming])
            await b.parking.park(
                [
                    (i.origin, self.name, max(i.attempts, counted.get(i.event.id, 0)), i.event)
                    for i in incoming
                ]
            )
            for m in self.got:
                self.link.ack(m.mid, self.link.epoch)
            await b.state.settle(self.name, list(counted))
        await self.close(end=True)
        return len(self.got)

    async def close(self, *, end: bool) -> None:
        await self.link.close(end_session=end)
        if end:
            self.slot.mark(False)
