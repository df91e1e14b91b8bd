"""A subscription: a consumer with prefetch, client-side leases, batched settling.

RabbitMQ has no visibility timeout: a delivery stays with its consumer until it
is settled or the channel closes. scorebus's lease is kept here instead: a
delivery not settled within ``ack_deadline_s`` of being pulled is nacked with
requeue, so another consumer can take it (RabbitMQ counts the redelivery in
``x-delivery-count``), and the stale holder's later ack, nack or extend is
ignored. Every delivery tag is settled exactly once, because settling a tag
twice would close the channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel

from ..base import Delivery
from ._ledger import SETTLE_ERRORS, Lease, Ledger
from ._options import delay_bucket_ms
from ._wire import ATTEMPTS, attempt_of, copy_properties, dead_letter_headers, event_of

if TYPE_CHECKING:
    from .broker import AmqpBroker

log = logging.getLogger(__name__)


class AmqpSubscription:
    """A durable quorum queue bound to its topic's exchange; see the module docstring."""

    def __init__(self, broker: AmqpBroker, topic: str, name: str, ack_deadline_s: float) -> None:
        self._broker = broker
        self._link = broker._link
        self._opts = broker._opts
        self.topic = topic
        self.name = name
        self.ack_deadline_s = ack_deadline_s
        self.queue = self._opts.queue(name)
        self.acked = 0
        self.delays: set[int] = set()  # delay buckets declared by this process
        self._ledger = Ledger(name)
        self._buffer: deque[AbstractIncomingMessage] = deque()
        self._arrived = asyncio.Event()
        self._channel: AbstractRobustChannel | None = None
        self._start = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def buffered(self) -> int:
        """Delivered to this process but not pulled yet (still pending to the user)."""
        return len(self._buffer) if self._ledger.open else 0

    @property
    def in_flight(self) -> int:
        """Leased and not yet settled (0 once the channel died: RabbitMQ requeued them)."""
        return self._ledger.leased if self._ledger.open else 0

    # ---------------------------------------------------------------- consuming

    async def _consume(self) -> None:
        async with self._start:
            if self._channel is not None:
                return
            self._closed = False
            async with self._link.guard(f"consuming {self.queue!r}"):
                ch = await self._link.channel(prefetch=self._opts.prefetch)
                # A robust queue: after a reconnect aio-pika declares it again and
                # restarts this consumer on the new channel.
                queue = await ch.declare_queue(
                    self.queue, durable=True, arguments=self._opts.queue_args(self.name)
                )
                await queue.consume(self._on_message)
            self._channel = ch

    async def _on_message(self, msg: AbstractIncomingMessage) -> None:
        if self._ledger.arrived(msg):
            self._buffer.clear()  # from the dead channel: RabbitMQ requeued them
        self._buffer.append(msg)
        self._arrived.set()

    async def pull(self, max_messages: int, timeout_s: float) -> list[Delivery]:
        """Lease up to ``max_messages``; wait at most ``timeout_s`` for the first one."""
        give_up = time.monotonic() + timeout_s
        if max_messages <= 0:
            return []
        await self._consume()
        while True:
            if self._buffer:
                await self._linger(max_messages)
                out = self._take(max_messages)
                if out:
                    return out
            remaining = give_up - time.monotonic()
            if remaining <= 0:
                return []
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._arrived.wait()

    async def _linger(self, want: int) -> None:
        """Let deliveries already read from the socket reach the buffer (each takes
        two task hops in aio-pika), so one pull returns a burst, not its first message."""
        stalls = 0
        for _ in range(64):
            if len(self._buffer) >= want or stalls >= 3:
                return
            before = len(self._buffer)
            await asyncio.sleep(0)
            stalls = 0 if len(self._buffer) > before else stalls + 1

    def _take(self, n: int) -> list[Delivery]:
        deadline = time.time() + self.ack_deadline_s
        out: list[Delivery] = []
        leases: list[Lease] = []
        source = f"{self._opts.display}{self.queue}"
        while self._buffer and len(out) < n:
            msg = self._buffer.popleft()
            lease = self._ledger.lease(msg, deadline)
            if lease is None:
                continue
            leases.append(lease)
            headers = msg.headers
            event = event_of(headers, msg.content_type, msg.message_id, msg.body, source=source)
            out.append(
                Delivery(
                    event,
                    attempt=attempt_of(headers),
                    handle=lease,
                    subscription=self,
                    size=len(msg.body),
                    deadline=deadline,
                )
            )
        if leases:
            asyncio.get_running_loop().call_later(self.ack_deadline_s, self._expire, leases)
        return out

    # ---------------------------------------------------------------- leases

    def _expire(self, leases: list[Lease]) -> None:
        if self._closed:
            return
        now = time.time()
        due = self._ledger.claim(ls for ls in leases if ls.deadline <= now + 0.005)
        # Extended leases (which also have a timer of their own), or a timer that
        # fired early by the wall clock: look again at the earliest deadline.
        later = [ls for ls in leases if ls.live and ls.deadline > now + 0.005]
        if later:
            wait = min(ls.deadline for ls in later) - now
            asyncio.get_running_loop().call_later(wait, self._expire, later)
        if due:
            log.debug("subscription=%s %d lease(s) expired: requeued", self.name, len(due))
            self._spawn(self._ledger.send(due, ack=False))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---------------------------------------------------------------- settling

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        leases = self._ledger.claim(d.handle for d in deliveries)
        self.acked += len(leases)
        await self._ledger.send(leases, ack=True)

    async def nack(self, deliveries: Sequence[Delivery], delay_s: float = 0.0) -> None:
        """Redeliver now (requeue), or after ``delay_s`` through a delay queue."""
        live = [d for d in deliveries if self._ledger.claim([d.handle])]
        leases: list[Lease] = [d.handle for d in live]
        if not leases or delay_s <= 0:
            await self._ledger.send(leases, ack=False)
            return
        bucket, ms = delay_bucket_ms(delay_s)
        queue = self._opts.delay(self.name, bucket)
        out = []
        for d, lease in zip(live, leases, strict=True):
            props = copy_properties(
                lease.msg.headers,
                lease.msg.content_type,
                lease.msg.message_id,
                {ATTEMPTS: d.attempt},
            )
            props.expiration = str(ms)
            out.append(("", queue, lease.msg.body, props))
        await self._republish(leases, out, "delaying a retry", bucket=bucket)

    async def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        """Push the lease of each still-valid delivery to ``seconds`` from now."""
        deadline = time.time() + max(0.0, seconds)
        leases = []
        for d in deliveries:
            lease: Lease = d.handle
            if self._ledger.current(lease):
                lease.deadline = d.deadline = deadline
                leases.append(lease)
        if leases:
            asyncio.get_running_loop().call_later(max(0.0, seconds), self._expire, leases)

    async def dead_letter(self, items: Sequence[tuple[Delivery, str, str]]) -> None:
        """Copy each to ``<prefix>.<subscription>.dlq`` with its reason (confirmed), then ack."""
        live = [(d, r, e) for d, r, e in items if self._ledger.claim([d.handle])]
        leases: list[Lease] = [d.handle for d, _, _ in live]
        if not leases:
            return
        dlq = self._opts.dlq(self.name)
        out = []
        for (d, reason, error), lease in zip(live, leases, strict=True):
            extra = dead_letter_headers(d.attempt, reason, error, self.topic)
            props = copy_properties(
                lease.msg.headers, lease.msg.content_type, lease.msg.message_id, extra
            )
            out.append(("", dlq, lease.msg.body, props))
        await self._republish(leases, out, "dead-lettering")

    async def _republish(
        self, leases: list[Lease], out: list[Any], doing: str, *, bucket: int | None = None
    ) -> None:
        """Publish copies (confirmed), then ack the originals; if publishing fails,
        requeue the originals instead, so nothing is lost either way."""
        try:
            if bucket is not None and bucket not in self.delays:
                await self._broker._declare_delay(self, bucket)
            await self._link.publish(out, doing)
        except Exception as exc:
            log.warning(
                "subscription=%s %s failed for %d deliveries, requeued instead: %s",
                self.name,
                doing,
                len(leases),
                exc,
            )
            await self._ledger.send(leases, ack=False)
            return
        await self._ledger.send(leases, ack=True)

    async def close(self) -> None:
        """Stop consuming; RabbitMQ requeues whatever was buffered or leased."""
        self._closed = True
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        ch, self._channel = self._channel, None
        self._buffer.clear()
        if ch is not None:
            with contextlib.suppress(*SETTLE_ERRORS):
                await ch.close()
