"""A live member takes over its subscription's idle sessions on this host.

Triggered when the member starts, when the register shows a member of the
subscription leaving (its MQTT will fires if it was killed), and every few
seconds from ``pull``. Detaching (connect as the idle session, unsubscribe
it) comes first and at once, so a dead member stops getting its turn of new
messages within milliseconds; moving what it holds to the live members
follows, and bulk republishing pauses while a detach is under way (``calm``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from ...errors import ScorebusError
from ._sessions import IdleSession
from ._slots import Slot

if TYPE_CHECKING:
    from .broker import MqttBroker

log = logging.getLogger(__name__)

EVERY_S = 5.0


class Reaper:
    """Detaches and drains the idle sessions of one subscription (see the module docstring)."""

    def __init__(self, broker: MqttBroker, topic: str, name: str) -> None:
        self.broker, self.topic, self.name = broker, topic, name
        self._digest = broker.opts.digest(name)
        self._detached: list[IdleSession] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._mover: asyncio.Task[None] | None = None
        self._detaching = 0
        self._calm = asyncio.Event()
        self._calm.set()
        self._last = 0.0
        self._closed = False

    def due(self) -> bool:
        return time.monotonic() - self._last > EVERY_S

    def soon(self) -> None:
        """Look for idle sessions now (in the background)."""
        if self._closed:
            return
        self._last = time.monotonic()
        self._detaching += 1
        self._calm.clear()
        task = asyncio.create_task(self._detach())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def calm(self) -> None:
        """Wait (a bounded time) while idle sessions are being detached.

        A message Mosquitto hands to a dead member's session beyond its
        ``max_queued_messages`` is dropped, so bulk republishing waits here.
        """
        if not self._calm.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._calm.wait(), self.broker.opts.timeout_s)

    async def _detach(self) -> None:
        try:
            for slot in Slot.idle(self.broker.opts.state, self._digest):
                session = IdleSession(self.broker, self.topic, self.name, slot)
                try:
                    await session.open(detach=True)
                except BaseException as exc:
                    await session.link.close()
                    slot.release()
                    if not isinstance(exc, ScorebusError):
                        raise
                    log.warning(
                        "subscription %s: cannot detach an idle session: %s", self.name, exc
                    )
                    continue
                self._detached.append(session)
        finally:
            self._detaching -= 1
            if not self._detaching:
                self._calm.set()
        if self._detached and not self._closed and (self._mover is None or self._mover.done()):
            self._mover = asyncio.create_task(self._move())

    async def _move(self) -> None:
        while self._detached:
            session = self._detached.pop(0)
            try:
                moved = await session.move()
                if moved:
                    log.info(
                        "subscription %s: took over %d messages of an idle session",
                        self.name,
                        moved,
                    )
            except ScorebusError as exc:
                log.warning("subscription %s: cannot drain an idle session: %s", self.name, exc)
            finally:
                await session.link.close()
                session.slot.release()

    async def close(self) -> None:
        self._closed = True
        for task in [*self._tasks, *([self._mover] if self._mover else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for session in self._detached:
            await session.link.close()
            session.slot.release()
        self._detached.clear()
