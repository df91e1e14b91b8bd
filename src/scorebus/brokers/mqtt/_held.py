"""The messages a member holds unacked at Mosquitto, and their leases.

MQTT has no lease: a QoS 1 message stays with the connected client that got it
until that client PUBACKs it. The lease is kept here instead: a held message
is ``READY``, ``LEASED`` until ``visible_at`` (then ready again, for the same
member), or ``NACKED`` while its copy waits to be republished. Every lease
bumps ``token``; a delivery carries the token it was leased with, so a
consumer whose lease ran out cannot settle the next holder's lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from ...events import Event

READY, LEASED, NACKED = 0, 1, 2


@dataclass(slots=True, eq=False)
class Held:
    """A message held unacked at Mosquitto."""

    seq: int
    mid: int
    epoch: int
    event: Event
    prior: int  # attempts before this copy (carried by the copy)
    origin: str
    state: int = READY
    token: int = 0
    leases: int = 0  # leases made here
    attempt: int = 0  # the attempt number of the current (or last) lease
    visible_at: float = 0.0


class HeldMessages:
    """The buffer of one member, in arrival order (see the module docstring)."""

    def __init__(self) -> None:
        self._held: dict[int, Held] = {}
        self._ready: deque[int] = deque()
        self._timers: list[tuple[float, int, int]] = []
        self._seq = itertools.count(1)
        self._arrived = asyncio.Event()
        self._poked = False

    def poke(self) -> None:
        """Make a waiting :meth:`take` return now (something else arrived)."""
        self._poked = True
        self._arrived.set()

    def __iter__(self) -> Iterator[Held]:
        return iter(list(self._held.values()))

    def __len__(self) -> int:
        return len(self._held)

    def add(self, mid: int, epoch: int, event: Event, prior: int, origin: str) -> None:
        seq = next(self._seq)
        self._held[seq] = Held(seq, mid, epoch, event, prior, origin)
        self._ready.append(seq)
        self._arrived.set()

    def clear(self) -> None:
        self._held.clear()
        self._ready.clear()
        self._timers.clear()

    def holds(self, h: Held) -> bool:
        return self._held.get(h.seq) is h

    def remove(self, h: Held) -> None:
        self._held.pop(h.seq, None)

    def current(self, handle: tuple[int, int]) -> Held | None:
        """The held message a delivery's handle still leases (None if stale)."""
        seq, token = handle
        h = self._held.get(seq)
        return h if h is not None and h.token == token and h.state != NACKED else None

    def requeue(self, held: list[Held]) -> None:
        """Ready again at the front (a copy could not be republished)."""
        for h in held:
            h.state = READY
        self._ready.extendleft(reversed([h.seq for h in held]))
        self._arrived.set()

    def lease_until(self, h: Held, at: float) -> None:
        h.state, h.visible_at = LEASED, at
        heapq.heappush(self._timers, (at, h.seq, h.token))

    def _expire(self, now: float) -> float:
        """Make run-out leases ready again; the time of the next one to run out."""
        back = []
        while self._timers and self._timers[0][0] <= now:
            at, seq, token = heapq.heappop(self._timers)
            h = self._held.get(seq)
            if h is not None and h.state == LEASED and h.token == token and h.visible_at == at:
                h.state = READY
                back.append(seq)
        self._ready.extendleft(reversed(back))
        return self._timers[0][0] if self._timers else float("inf")

    async def take(self, max_messages: int, timeout_s: float, lease_s: float) -> list[Held]:
        """Lease up to ``max_messages``, waiting at most ``timeout_s`` for the first."""
        give_up = time.monotonic() + timeout_s
        while True:
            now = time.time()
            next_expiry = self._expire(now)
            taken: list[Held] = []
            while self._ready and len(taken) < max_messages:
                h = self._held.get(self._ready.popleft())
                if h is None or h.state != READY:
                    continue
                h.token, h.leases = h.token + 1, h.leases + 1
                self.lease_until(h, now + lease_s)
                taken.append(h)
            remaining = give_up - time.monotonic()
            if taken or remaining <= 0 or self._poked:
                self._poked = False
                return taken
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(remaining, next_expiry - now))

    def counts(self) -> tuple[int, int]:
        """(pending, in flight): ready or run out, and leased or waiting to be republished."""
        now = time.time()
        pending = sum(
            1
            for h in self._held.values()
            if h.state == READY or (h.state == LEASED and h.visible_at <= now)
        )
        return pending, len(self._held) - pending
