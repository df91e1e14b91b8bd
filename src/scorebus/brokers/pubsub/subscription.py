"""Pulling, leases and settling on one Pub/Sub subscription.

Pulls are unary ``Pull`` calls of 1,000 messages: against the emulator a
StreamingPull stream delivers a few thousand messages a second while unary
pulls of 1,000 with batched acks reach tens of thousands (see
``benchmarks/brokers/pubsub_raw.py``). A pull asks for 1,000 whatever the
caller wants (a scorer closing batches of 512 would otherwise make twice the
calls for the same messages); what the caller did not take waits in a buffer
for its next call. One pull call is on the wire at a time;
``pull(max, timeout)`` waits for it at most ``timeout`` and leaves it running,
so a long poll is never cut short (cancelling a pull can strand messages until
their ack deadline) and what it brings later is handed out by the next call.

While a backlog lasts (the last pull came back full), the next pull is sent as
soon as a reply arrives, before the reply is decoded, and whenever the buffer
falls below 1,000: the server is always working on this subscription's next
pull while the caller scores a batch, as a bare pull loop keeps it. At most
two pulls' worth of messages wait leased beyond what the caller holds; they
are released at :meth:`~PubSubSubscription.close`.

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
from typing import TYPE_CHECKING, Any

from ...errors import DecodeError
from ...events import Event
from ..base import Delivery
from .binding import FOR, from_message
from .leases import Handle, Leases
from .rpc import AcknowledgeRequest, ModifyAckDeadlineRequest, PullRequest

if TYPE_CHECKING:
    from .broker import PubSubBroker

log = logging.getLogger(__name__)
FIRST = asyncio.FIRST_COMPLETED

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
        self._on_wire: Any = None  # the pull call in flight (a grpc.aio call)
        self._fetches: set[asyncio.Future[None]] = set()  # its handling, and a previous one's
        self._in_order = asyncio.Lock()
        self._backlog = False
        self._what = f"subscription {name!r}"

    async def pull(self, max_messages: int, timeout_s: float) -> list[Delivery]:
        self._raise_failed_fetch()
        if max_messages <= 0:
            return []
        if not self._ready:
            self._send_pull()
            # asyncio.wait neither cancels the pull at the timeout nor raises its error.
            await asyncio.wait(self._fetches, timeout=max(0.0, timeout_s), return_when=FIRST)
            self._raise_failed_fetch()
        out = self._take(max_messages)
        if self._backlog and len(self._ready) < MAX_PULL:
            self._send_pull()  # draining a backlog: read ahead while this batch is scored
        return out

    def _send_pull(self) -> None:
        """Send a pull unless one is on the wire (one at a time per subscription)."""
        if self._on_wire is None:
            request = PullRequest(subscription=self._path, max_messages=MAX_PULL)
            self._on_wire = self._rpc.send("pull", request, timeout=_PULL_RPC_S)
            self._fetches.add(asyncio.ensure_future(self._fetch(self._on_wire)))

    def _raise_failed_fetch(self) -> None:
        # A pull that finished after its caller stopped waiting: report its error now.
        done = [task for task in self._fetches if task.done()]
        self._fetches.difference_update(done)
        errors = [e for t in done if not t.cancelled() and (e := t.exception()) is not None]
        if errors:
            self._backlog = False
            raise errors[0]

    def _take(self, max_messages: int) -> list[Delivery]:
        now = time.time()
        out: list[Delivery] = []
        while self._ready and len(out) < max_messages:
            d = self._ready.popleft()
            # A lease that ran out while buffered is the broker's to redeliver.
            if self._leases.live(d.handle, now + 0.05):
                out.append(d)
        return out

    async def _fetch(self, sent: Any) -> None:
        try:
            response = await self._rpc.result(sent, what=self._what, empty_on_deadline=True)
        finally:
            if self._on_wire is sent:
                self._on_wire = None
        received = time.time()
        received_messages = response.received_messages if response is not None else ()
        # A full pull means more is waiting: send the next one before decoding this one.
        self._backlog = len(received_messages) >= MAX_PULL
        if self._backlog and not self._ready and not self._in_order.locked():
            self._send_pull()
            await asyncio.sleep(0)  # lets gRPC put it on the wire before the decoding below
        if received_messages:
            async with self._in_order:  # fetches hand out in the order they were sent
                await self._hand_out(received_messages, received)

    async def _hand_out(self, received_messages: Sequence[Any], received: float) -> None:
        deadline = received + self._lease_s - (0 if self._reset_lease else _WIRE_S)
        mine, foreign, bad = [], [], []
        for rm in received_messages:
            message = rm.message
            # One copy, as lookups in a protobuf map are slow; dict(map) is slower still.
            amap = message.attributes
            attrs = {k: amap[k] for k in amap}
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
            await self._rpc.call("acknowledge", request, timeout=30, what=self._what)

    async def _modack(self, ack_ids: list[str], seconds: int) -> None:
        for i in range(0, len(ack_ids), _ACK_BATCH):
            request = ModifyAckDeadlineRequest(
                subscription=self._path,
                ack_ids=ack_ids[i : i + _ACK_BATCH],
                ack_deadline_seconds=seconds,
            )
            await self._rpc.call("modify_ack_deadline", request, timeout=30, what=self._what)

    async def close(self) -> None:
        """Stop the outstanding pull and hand buffered messages back at once."""
        fetches, self._fetches = self._fetches, set()
        if self._on_wire is not None:
            self._on_wire.cancel()  # also when its task has not started yet
            self._on_wire = None
        for task in fetches:
            task.cancel()
        for task in fetches:
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
