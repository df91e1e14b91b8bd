"""A member's side of the events parked on its host (:mod:`._parking`).

Parked events are leased straight from ``state.db`` by every member on the
host (an atomic ``UPDATE ... RETURNING``, as in the embedded broker), so they
are shared by the host's workers and never pass Mosquitto's per-client limits.
A nack or an extension moves ``visible_at``; an ack deletes the row, but only
for the current lease (``leases`` must match).

With ``spool`` on (the default for MQTT 3.1.1, where Mosquitto allows a client
only ``max_inflight_messages``, 20 by default, unacked at a time), the member
also parks every message as it arrives, in batches, and PUBACKs it once the
batch is committed, so Mosquitto never queues for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...errors import ScorebusError
from ..base import Delivery, Subscription
from ._wire import Incoming

if TYPE_CHECKING:
    from .broker import MqttBroker

log = logging.getLogger(__name__)

POLL_S = 0.5  # how often to look for events another process parked
SPOOL_WAIT_S = 0.0  # yield once: what arrived meanwhile joins the commit


@dataclass(frozen=True, slots=True)
class ParkedHandle:
    """A delivery of a parked event: its row, the lease number it was given, its topic."""

    seq: int
    leases: int
    topic: str


def parked_of(deliveries: Sequence[Delivery]) -> list[tuple[int, int]]:
    """``(seq, lease number)`` of the deliveries that came from parked events."""
    return [
        (d.handle.seq, d.handle.leases) for d in deliveries if isinstance(d.handle, ParkedHandle)
    ]


class LocalQueue:
    """One member's access to its subscription's parked events."""

    def __init__(self, broker: MqttBroker, name: str, wake: Callable[[], None]) -> None:
        self.broker, self.name = broker, name
        self._wake = wake
        self._hint = True
        self._checked = 0.0
        self._inbox: list[tuple[Incoming, int, int]] = []
        self._spooler: asyncio.Task[None] | None = None
        self.ack_mqtt: Callable[[int, int], None] = lambda mid, epoch: None

    def arrived(self) -> None:
        """Events were parked for this subscription: look at once."""
        self._hint = True
        self._wake()

    async def lease(self, sub: Subscription, limit: int, lease_s: float) -> list[Delivery]:
        """Lease up to ``limit`` parked events (skipped while none were seen lately)."""
        if limit <= 0 or (not self._hint and time.monotonic() - self._checked < POLL_S):
            return []
        self._checked = time.monotonic()
        try:
            rows = await self.broker.state.lease_parked(self.name, limit, lease_s)
        except ScorebusError as exc:
            log.warning("subscription %s: parked events not read: %s", self.name, exc)
            return []
        self._hint = len(rows) == limit
        deadline = time.time() + lease_s
        return [
            Delivery(
                event,
                attempt=attempts + leases,
                handle=ParkedHandle(seq, leases, topic),
                subscription=sub,
                deadline=deadline,
            )
            for seq, topic, attempts, leases, event in rows
        ]

    async def ack(self, handles: Sequence[tuple[int, int]]) -> int:
        return await self.broker.state.settle_parked(handles) if handles else 0

    async def delay(self, handles: Sequence[tuple[int, int]], at: float) -> None:
        if handles:
            await self.broker.state.delay_parked(handles, at)
            self._hint = True

    # ------------------------------------------------------------ spooling

    def spool(self, inc: Incoming, mid: int, epoch: int) -> None:
        """Park an arriving message (PUBACKed once committed)."""
        self._inbox.append((inc, mid, epoch))
        if self._spooler is None or self._spooler.done():
            self._spooler = asyncio.create_task(self._spool_in())

    async def _spool_in(self) -> None:
        while self._inbox:
            await asyncio.sleep(SPOOL_WAIT_S)
            batch, self._inbox = self._inbox, []
            try:
                await self.broker.parking.park(
                    [(i.origin, self.name, i.attempts, i.event) for i, _, _ in batch]
                )
            except ScorebusError as exc:
                log.warning("subscription %s: cannot spool (%s); retrying", self.name, exc)
                self._inbox[:0] = batch
                await asyncio.sleep(0.5)
                continue
            for _, mid, epoch in batch:
                self.ack_mqtt(mid, epoch)

    def drop_inbox(self) -> None:
        """The connection was lost: Mosquitto resends what was not PUBACKed."""
        self._inbox.clear()

    async def drain(self) -> None:
        """Commit what is being spooled (before the member leaves)."""
        if self._spooler is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._spooler
