"""Pulling, leases and settling on one Pub/Sub subscription.

Pulls are unary ``Pull`` calls of up to 1,000 messages: against the emulator a
StreamingPull stream delivers a few thousand messages a second while unary
pulls of 1,000 with batched acks reach tens of thousands (see
``benchmarks/brokers/pubsub_raw.py``). One pull call is outstanding at a time;
``pull(max, timeout)`` waits for it at most ``timeout`` and leaves it running, so
a long poll is never cut short (cancelling a pull can strand messages until
their ack deadline) and what it brings later is handed out by the next call.

Lease mapping:

- lease length: the subscription's ``ack_deadline_s`` rounded up to whole
  seconds (1-600). Pub/Sub's subscription setting allows 10-600 s, so a shorter
  (or different) lease is applied right after each pull with
  ``modifyAckDeadline``, which accepts 0-600 s: a worker that dies releases its
  messages after the requested lease, not after 10 s;
- ``deadline``: time of receipt + lease, less 0.1 s for the time the response
  spent on the wire;
- ack: ``acknowledge`` (batches of 2,500 ids); nack(delay): ``modifyAckDeadline``
  to ``ceil(delay)`` (0-600 s), which is how Pub/Sub expresses a redelivery delay;
  extend: ``modifyAckDeadline`` too;
- dead letter: kept in scorebus's dead-letter store (listing and replay), also
  published to ``<subscription>.dead-letter`` with ``scorebus-reason``,
  ``scorebus-error`` and ``scorebus-attempts`` attributes, then acked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ...errors import DecodeError
from ...events import Event
from ..base import Delivery
from .binding import FOR, from_message
from .leases import Handle, Leases
from .rpc import AcknowledgeRequest, ModifyAckDeadlineRequest, PullRequest

if TYPE_CHECKING:
    from .broker import PubSubBroker

log = logging.getLogger(__name__)

MAX_PULL = 1000
_ACK_BATCH = 2500
# The emulator answers an empty pull ~1 s before the call's deadline; the real
# service answers when messages arrive or fails the call at its deadline.
_PULL_RPC_S = 10.0
_WIRE_S = 0.1


def lease_seconds(ack_deadline_s: float) -> int:
    """Whole seconds Pub/Sub can hold a lease for: ``ceil`` clamped to 1-600."""
    return min(600, max(1, math.ceil(ack_deadline_s)))


class PubSubSubscription:
    """One subscription as seen from this process; see the module docstring."""

    def __init__(
        self,
        broker: PubSubBroker,
        topic: str,
        name: str,
        *,
        lease_s: int,
        server_lease_s: int,
        dead_letter_topic: str | None,
    ) -> None:
        self.topic = topic
        self.name = name
        self.ack_deadline_s = float(lease_s)
        self.dead_letter_topic = dead_letter_topic
        self._broker = broker
        self._rpc = broker._rpc
        self._path = broker.opts.subscription_path(name)
        self._topic_path = broker.opts.topic_path(topic)
        self._lease_s = lease_s
        self._reset_lease = lease_s != server_lease_s
        self._leases: Leases = broker._leases.setdefault(name, Leases())
        self._ready: deque[Delivery] = deque()
        self._pulling: asyncio.Task[None] | None = None
        self._what = f"subscription {name!r}"

    async def pull(self, max_messages: int, timeout_s: float) -> list[Delivery]:
        task = self._pulling
        if task is not None and task.done():
            # A pull that finished after its caller stopped waiting: report its error now.
            self._pulling = None
            if not task.cancelled() and (exc := task.exception()) is not None:
                raise exc
        if max_messages <= 0:
            return []
        if not self._ready:
            if self._pulling is None:
                self._pulling = asyncio.ensure_future(self._fetch(min(max_messages, MAX_PULL)))
            task = self._pulling
            # asyncio.wait neither cancels the pull at the timeout nor raises its error.
            await asyncio.wait({task}, timeout=max(0.0, timeout_s))
            if task.done():
                self._pulling = None
                if not task.cancelled() and (exc := task.exception()) is not None:
                    raise exc
        return self._take(max_messages)

    def _take(self, max_messages: int) -> list[Delivery]:
        now = time.time()
        out: list[Delivery] = []
        while self._ready and len(out) < max_messages:
            d = self._ready.popleft()
            # A lease that ran out while buffered is the broker's to redeliver.
            if self._leases.live(d.handle, now + 0.05):
                out.append(d)
        return out

    async def _fetch(self, max_messages: int) -> None:
        request = PullRequest(subscription=self._path, max_messages=max_messages)
        response = await self._rpc.call(
            self._rpc.pull, request, timeout=_PULL_RPC_S, what=self._what, empty_on_deadline=True
        )
        if response is None or not response.received_messages:
            return
        received = time.time()
        deadline = received + self._lease_s - (0 if self._reset_lease else _WIRE_S)
        mine, foreign, bad = [], [], []
        for rm in response.received_messages:
            message = rm.message
            attrs = dict(message.attributes)  # one copy: protobuf map lookups are slow
            target = attrs.get(FOR)
            if target and target != self.name:
                foreign.append(rm.ack_id)
                continue
            handle: Handle = (rm.ack_id, message.message_id)
            attempt = self._leases.take(handle, deadline, rm.delivery_attempt)
            try:
                event = from_message(message, attrs, self._topic_path)
            except DecodeError as exc:
                event = Event(
                    id=message.message_id, type="scorebus.undecodable", data=bytes(message.data)
                )
                bad.append((self._delivery(event, attempt, handle, deadline), exc))
                continue
            mine.append(self._delivery(event, attempt, handle, deadline))
        if self._reset_lease and mine:
            await self._modack([d.handle[0] for d in mine], self._lease_s)
        if foreign:
            # Meant for another subscription of the topic (a replay, an adoption).
            await self._ack_ids(foreign)
        self._ready.extend(mine)
        if bad:
            await self.dead_letter([(d, exc.reason, str(exc)) for d, exc in bad])
        self._leases.prune(received)

    def _delivery(self, event: Event, attempt: int, handle: Handle, deadline: float) -> Delivery:
        return Delivery(event, attempt=attempt, handle=handle, subscription=self, deadline=deadline)

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        # A superseded lease is ignored: the newer holder settles the message.
        handles = [d.handle for d in deliveries if not self._leases.superseded(d.handle)]
        if handles:
            await self._ack_ids([h[0] for h in handles])
            self._leases.settle(handles)
            self._leases.acked += len(handles)

    async def nack(self, deliveries: Sequence[Delivery], delay_s: float = 0.0) -> None:
        handles = self._live(deliveries)
        if handles:
            await self._modack([h[0] for h in handles], min(600, max(0, math.ceil(delay_s))))
            self._leases.settle(handles)

    async def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        live = [d for d in deliveries if self._leases.live(d.handle, time.time())]
        if not live:
            return
        lease = min(600, max(0, math.ceil(seconds)))
        sent = time.time()
        await self._modack([d.handle[0] for d in live], lease)
        self._leases.extend([d.handle for d in live], sent + lease)
        for d in live:
            d.deadline = sent + lease

    async def dead_letter(self, items: Sequence[tuple[Delivery, str, str]]) -> None:
        live = [item for item in items if not self._leases.superseded(item[0].handle)]
        if live:
            await self._broker._dead_letter(self, live)
            handles = [d.handle for d, _, _ in live]
            await self._ack_ids([h[0] for h in handles])
            self._leases.settle(handles)

    def _live(self, deliveries: Sequence[Delivery]) -> list[Handle]:
        now = time.time()
        return [d.handle for d in deliveries if self._leases.live(d.handle, now)]

    async def _ack_ids(self, ack_ids: list[str]) -> None:
        for i in range(0, len(ack_ids), _ACK_BATCH):
            request = AcknowledgeRequest(
                subscription=self._path, ack_ids=ack_ids[i : i + _ACK_BATCH]
            )
            await self._rpc.call(self._rpc.acknowledge, request, timeout=30, what=self._what)

    async def _modack(self, ack_ids: list[str], seconds: int) -> None:
        for i in range(0, len(ack_ids), _ACK_BATCH):
            request = ModifyAckDeadlineRequest(
                subscription=self._path,
                ack_ids=ack_ids[i : i + _ACK_BATCH],
                ack_deadline_seconds=seconds,
            )
            await self._rpc.call(
                self._rpc.modify_ack_deadline, request, timeout=30, what=self._what
            )

    async def close(self) -> None:
        """Stop the outstanding pull and hand buffered messages back at once."""
        task, self._pulling = self._pulling, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        handles = [d.handle for d in self._ready if not self._leases.superseded(d.handle)]
        self._ready.clear()
        if handles:
            try:
                await self._modack([h[0] for h in handles], 0)
            except Exception as exc:  # the leases run out by themselves
                log.debug("subscription=%s release at close failed: %s", self.name, exc)
            self._leases.settle(handles)

    def __repr__(self) -> str:
        return f"PubSubSubscription({self.name!r}, topic={self.topic!r})"
