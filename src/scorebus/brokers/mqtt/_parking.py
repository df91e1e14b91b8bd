"""Events waiting on this host, where Mosquitto would drop them.

MQTT drops a message published to a topic nobody subscribes to; Mosquitto keeps
at most ``max_queued_messages`` (1000 by default) for an offline session, and
for a connected one at most its Receive Maximum in flight plus that queue. So
scorebus never pushes a burst it makes itself through Mosquitto; it parks it
in the host's ``state.db`` (:mod:`._state`) instead:

- a publisher that sees in the register no subscription for a topic parks
  under ``subscription IS NULL`` (the first subscription created on the topic
  adopts it), and one that sees a subscription with no live member parks
  under that subscription;
- a live member parks what it takes from an idle session (a killed worker,
  a stopped anchor), what a member that stops hands off to the others on the
  host, and replayed dead letters.

The members on this host lease parked events directly (``pull`` serves them
first, oldest first). Where a subscription's live members are all on other
hosts, the broker that parked republishes its events to the subscription's
queue topic instead, in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ...errors import ScorebusError
from ...events import Event
from ._slots import Slot

if TYPE_CHECKING:
    from .broker import MqttBroker


class Parking:
    """What one broker parked, and where it can go (see the module docstring)."""

    def __init__(self, broker: MqttBroker) -> None:
        self.broker = broker
        self._parked_for: set[str | None] = set()
        self._seen = -1
        self._task: asyncio.Task[None] | None = None

    async def park(self, rows: Sequence[tuple[str, str | None, int, Event]]) -> None:
        """Park ``(topic, subscription or None, attempts so far, event)`` rows."""
        if not rows:
            return
        await self.broker.state.park(rows)
        names = {sub for _, sub, _, _ in rows}
        self._parked_for.update(names)
        for name in names:
            member = self.broker.member(name) if name else None
            if member is not None:
                member.parked_arrived()

    def due(self) -> bool:
        return bool(self._parked_for) and self._seen != self.broker.registry.version

    def kick(self) -> None:
        """Resolve in the background if the register changed since the last look."""
        if self.due() and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._resolve_quietly())

    async def _resolve_quietly(self) -> None:
        with contextlib.suppress(ScorebusError):
            await self.resolve()

    async def resolve(self) -> None:
        """Give unclaimed events to their topic's first subscription; send what has
        live members on other hosts only."""
        b = self.broker
        self._seen = b.registry.version
        if None in self._parked_for:
            self._parked_for.discard(None)
            self._parked_for.update(await b.state.adopt(b.registry.first_of()))
        for name in [n for n in self._parked_for if n is not None]:
            if not b.registry.is_live(name):
                continue
            self._parked_for.discard(name)
            member = b.member(name)
            if member is not None:
                member.parked_arrived()
            elif not Slot.others_in_use(b.opts.state, b.opts.digest(name), -1):
                await self._send(name)

    async def _send(self, name: str) -> None:
        b = self.broker
        async with b.state.flushing():
            while b.registry.is_live(name):
                rows = await b.state.take_parked(name)
                if not rows:
                    break
                await b.hand_to(name, [(e, a, topic) for _, topic, a, e in rows])
                await b.state.unpark([seq for seq, _, _, _ in rows])

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
