"""A subscription as a JetStream durable pull consumer.

Pulling speaks the pull protocol directly (``$JS.API.CONSUMER.MSG.NEXT``) on one
reply inbox per subscription: a ``no_wait`` request takes what is ready at once,
and only when nothing is a lingering one-message request waits for the next
publish. (nats-py's ``fetch`` keeps waiting for a full batch until its timeout,
which would hold a half-empty batch back for the whole pull timeout.)

Settling publishes JetStream's ack verbs to each message's reply subject, the
last of a batch as a request: JetStream applies one connection's acks in order,
so that reply confirms the whole batch. ``extend`` is a NAK with a delay, which
sets the lease to exactly the seconds asked for (``+WPI`` could only restart
AckWait). JetStream accepts an ack from a consumer whose lease already ran out,
so each subscription fences its own stale deliveries: only the latest delivery
of a message that it handed out may settle it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from collections.abc import Sequence

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as InboxSubscription

from ...errors import BrokerUnavailable
from ..base import Delivery
from ..dlq_store import DeadLetterStore
from .connection import Connection
from .messages import MSG_ID, REPLAY_FOR, decode

_ACK, _TERM, _NAK = b"+ACK", b"+TERM", b"-NAK"
_REPLY_GRACE_S = 1.0  # how long a no_wait pull may take to answer
_MIN_LINGER_S = 0.005  # below this, waiting for the next publish is not worth a request
_PRUNE_AT = 10_000  # fenced leases kept before the long-expired ones are dropped


def _nak(delay_s: float) -> bytes:
    if delay_s <= 0:
        return _NAK
    return b'-NAK {"delay": %d}' % int(delay_s * 1e9)


class NatsSubscription:
    """A durable pull consumer on the prefix's stream; see the module docstring."""

    def __init__(
        self,
        conn: Connection,
        store: DeadLetterStore,
        *,
        topic: str,
        name: str,
        durable: str,
        ack_deadline_s: float,
    ) -> None:
        self.topic = topic
        self.name = name
        self.durable = durable
        self.ack_deadline_s = ack_deadline_s
        self._conn = conn
        self._store = store
        self._next = f"$JS.API.CONSUMER.MSG.NEXT.{conn.opts.stream}.{durable}"
        self._inbox: str | None = None
        self._inbox_sub: InboxSubscription | None = None
        self._buffer: deque[tuple[Msg, float]] = deque()
        self._signal = asyncio.Event()
        self._tokens = itertools.count()
        self._waiting: set[str] = set()
        self._status: dict[str, tuple[str, str]] = {}
        # stream sequence -> (attempt, lease deadline) of what this subscription handed out
        self._leases: dict[int, tuple[int, float]] = {}
        self._prune_at = _PRUNE_AT

    # ------------------------------------------------------------------ pulling

    async def pull(self, max_messages: int, timeout_s: float) -> list[Delivery]:
        if max_messages <= 0:
            return []
        give_up = time.monotonic() + max(0.0, timeout_s)
        out = await self._take(max_messages)
        while len(out) < max_messages:
            need = max_messages - len(out)
            await self._ask(need, no_wait=True, until=time.monotonic() + _REPLY_GRACE_S)
            out += await self._take(need)
            remaining = give_up - time.monotonic()
            if out or remaining < _MIN_LINGER_S:
                break
            # Nothing ready: wait for the next message, then loop to collect the burst.
            await self._ask(1, expires_s=remaining, until=give_up)
            out += await self._take(need)
            if not out and time.monotonic() >= give_up:
                break
        return out

    async def _ask(
        self, batch: int, *, until: float, no_wait: bool = False, expires_s: float = 0.0
    ) -> None:
        """Send one pull request; return when it is answered, ``batch`` arrived, or ``until``."""
        request: dict[str, object] = {"batch": batch}
        if no_wait:
            request["no_wait"] = True
        if expires_s:
            request["expires"] = int(expires_s * 1e9)
        body = json.dumps(request).encode()

        async def once() -> None:
            nc = await self._conn.ready()
            inbox = await self._open_inbox(nc)
            token = str(next(self._tokens))
            self._waiting.add(token)
            try:
                await nc.publish(self._next, body, reply=f"{inbox}.{token}")
                status, description = await self._wait(token, batch, until)
            finally:
                self._waiting.discard(token)
                self._status.pop(token, None)
            if status == "503":  # no responders: the consumer or JetStream is away
                raise nats.errors.NoRespondersError
            if status == "409" and "deleted" in description.lower():
                raise self._deleted()
            if no_wait and not status and not self._buffer:
                # A no_wait request is answered at once; silence means the request was
                # lost on a dropped connection, or nobody serves the consumer any more.
                if not nc.is_connected:
                    raise nats.errors.TimeoutError  # wait for the reconnect
                await self._check_consumer()

        await self._conn.retry(f"pulling from subscription {self.name!r}", once)

    async def _check_consumer(self) -> None:
        js = await self._conn.jetstream()
        try:
            await js.consumer_info(self._conn.opts.stream, self.durable)
        except nats.js.errors.NotFoundError:
            raise self._deleted() from None

    def _deleted(self) -> BrokerUnavailable:
        return BrokerUnavailable(
            f"the JetStream consumer {self.durable!r} of subscription {self.name!r} is gone"
            f" from stream {self._conn.opts.stream!r} on {self._conn.opts.display}"
            " (deleted?): restart the worker; opening the subscription recreates it"
        )

    async def _wait(self, token: str, batch: int, until: float) -> tuple[str, str]:
        while token not in self._status and len(self._buffer) < batch:
            remaining = until - time.monotonic()
            if remaining <= 0:
                break
            self._signal.clear()
            try:
                await asyncio.wait_for(self._signal.wait(), remaining)
            except TimeoutError:
                break
        return self._status.get(token, ("", ""))

    async def _open_inbox(self, nc: Client) -> str:
        if self._inbox is None:
            inbox = nc.new_inbox()
            self._inbox_sub = await nc.subscribe(f"{inbox}.*", cb=self._on_message)
            self._inbox = inbox
        return self._inbox

    async def _on_message(self, msg: Msg) -> None:
        if msg.reply:  # a delivery; status messages carry no reply subject
            self._buffer.append((msg, time.time()))
        else:
            headers = msg.headers or {}
            status = headers.get("Status", "")
            token = msg.subject.rpartition(".")[2]
            if token in self._waiting and status != "100":  # 100: idle heartbeat
                self._status[token] = (status, headers.get("Description", ""))
        self._signal.set()

    async def _take(self, n: int) -> list[Delivery]:
        out: list[Delivery] = []
        others: list[str] = []
        now = time.time()
        while self._buffer and len(out) < n:
            msg, arrived = self._buffer.popleft()
            deadline = arrived + self.ack_deadline_s
            if deadline <= now:
                continue  # its lease ran out while buffered: JetStream redelivers it
            headers = msg.headers or {}
            target = headers.get(REPLAY_FOR)
            if target is not None and target != self.name:
                others.append(msg.reply)
                continue
            meta = msg.metadata
            seq, attempt = meta.sequence.stream, meta.num_delivered
            event = decode(
                headers,
                msg.data,
                fallback_id=f"{meta.stream}-{seq}",
                stored_at=meta.timestamp.timestamp(),
            )
            self._leases[seq] = (attempt, deadline)
            out.append(
                Delivery(
                    event,
                    attempt=attempt,
                    handle=(seq, attempt, msg.reply),
                    subscription=self,
                    size=len(msg.data),
                    deadline=deadline,
                )
            )
        if others:
            # A replay meant for a sibling subscription: settle it unseen. Losing
            # this ack only means seeing (and skipping) it again.
            nc = await self._conn.client()
            for reply in others:
                await nc.publish(reply, _ACK)
        if len(self._leases) > self._prune_at:
            self._prune(now)
        return out

    def _prune(self, now: float) -> None:
        # Leases that ran out long ago went to another consumer; forget them.
        horizon = now - max(60.0, 10 * self.ack_deadline_s)
        self._leases = {s: v for s, v in self._leases.items() if v[1] > horizon}
        self._prune_at = max(_PRUNE_AT, 2 * len(self._leases))

    # ------------------------------------------------------------------ settling

    def _live(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """The deliveries that still hold their lease (the latest handed out here)."""
        live, seen = [], set()
        for d in deliveries:
            seq, attempt, _ = d.handle
            lease = self._leases.get(seq)
            if lease is not None and lease[0] == attempt and seq not in seen:
                seen.add(seq)
                live.append(d)
        return live

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        await self._settle(self._live(deliveries), _ACK)

    async def nack(self, deliveries: Sequence[Delivery], delay_s: float = 0.0) -> None:
        await self._settle(self._live(deliveries), _nak(delay_s))

    async def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        live = self._live(deliveries)
        if not live:
            return
        await self._send([d.handle[2] for d in live], _nak(seconds))
        deadline = time.time() + max(0.0, seconds)
        for d in live:
            d.deadline = deadline
            self._leases[d.handle[0]] = (d.handle[1], deadline)

    async def dead_letter(self, items: Sequence[tuple[Delivery, str, str]]) -> None:
        live = {id(d) for d in self._live([d for d, _, _ in items])}
        items = [item for item in items if id(item[0]) in live]
        if not items:
            return
        # Record first, then count on the server (NatsBroker.stats), then TERM: a
        # crash in between redelivers the message, and the store keeps one row.
        await self._store.add(self.topic, self.name, items)
        marker = self._conn.opts.dead_marker(self.durable)
        await self._conn.publish(
            marker, [({MSG_ID: f"dead:{self.durable}:{d.handle[0]}"}, b"") for d, _, _ in items]
        )
        await self._settle([d for d, _, _ in items], _TERM)

    async def _settle(self, live: list[Delivery], verb: bytes) -> None:
        if live:
            await self._send([d.handle[2] for d in live], verb)
            for d in live:
                self._leases.pop(d.handle[0], None)

    async def _send(self, replies: list[str], verb: bytes) -> None:
        async def once() -> None:
            nc = await self._conn.ready()
            for reply in replies[:-1]:
                await nc.publish(reply, verb)
            # Confirmed last: JetStream applies a connection's acks in order.
            await nc.request(replies[-1], verb, timeout=self._conn.opts.request_timeout_s)

        await self._conn.retry(f"settling {len(replies)} messages of {self.name!r}", once)

    async def close(self) -> None:
        """Hand back messages delivered but never pulled, so others get them at once."""
        buffered = [msg.reply for msg, _ in self._buffer]
        self._buffer.clear()
        sub, self._inbox_sub, self._inbox = self._inbox_sub, None, None
        nc = self._conn.current()
        if nc is None:
            return  # their leases run out and JetStream redelivers them
        try:
            for reply in buffered:
                await nc.publish(reply, _NAK)
            if sub is not None:
                await sub.unsubscribe()
        except (nats.errors.Error, OSError):
            pass  # as above: the leases run out
