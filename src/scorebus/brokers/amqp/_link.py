"""One robust connection to RabbitMQ and the channels scorebus uses on it.

aio-pika's robust connection reconnects on its own (every ``reconnect_interval``)
and reopens its channels and consumers. Every call here is bounded by the URL's
``timeout`` and turns SDK errors into scorebus's: a refused connection or an
unreachable server is :class:`BrokerUnavailable`, a refused login, a missing
vhost or a queue declared elsewhere with other arguments is :class:`ConfigError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import aio_pika
import aiormq
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from aiormq import spec
from aiormq.abc import AbstractChannel, DeliveredMessage

from ...errors import BrokerUnavailable, ConfigError
from ._options import AmqpOptions

log = logging.getLogger(__name__)

_SDK_ERRORS = (aiormq.exceptions.AMQPError, OSError, TimeoutError, RuntimeError)
# (exchange, routing key, body, properties)
Outgoing = tuple[str, str, bytes, spec.Basic.Properties]


def translate(exc: BaseException, opts: AmqpOptions, doing: str) -> Exception:
    """A one-line scorebus error for an SDK error; never shows the password."""
    where = opts.display
    if isinstance(
        exc, aiormq.exceptions.ProbableAuthenticationError | aiormq.exceptions.AuthenticationError
    ):
        return ConfigError(
            f"RabbitMQ at {where} refused the login of user {opts.user!r}: "
            "check the user name and password in the URL"
        )
    if isinstance(
        exc, aiormq.exceptions.ProtocolSyntaxError | aiormq.exceptions.ConnectionNotAllowed
    ):
        return ConfigError(
            f"RabbitMQ at {where} refused vhost {opts.vhost!r}: check that the vhost exists "
            f"and user {opts.user!r} may use it"
        )
    if isinstance(exc, aiormq.exceptions.ChannelPreconditionFailed):
        return ConfigError(
            f"RabbitMQ at {where} refused {doing}: {_reply(exc)}; a queue or exchange of "
            "that name exists with other arguments (another prefix, delivery_limit or type?)"
        )
    if isinstance(exc, aiormq.exceptions.ChannelAccessRefused):
        return ConfigError(
            f"RabbitMQ at {where} refused {doing}: {_reply(exc)}; check user {opts.user!r}'s "
            "permissions on the vhost"
        )
    if isinstance(exc, TimeoutError):
        return BrokerUnavailable(
            f"RabbitMQ at {where} did not answer within {opts.timeout:g} s while {doing}: "
            "check the server is up and reachable (URL option timeout=)"
        )
    return BrokerUnavailable(
        f"cannot reach RabbitMQ at {where} while {doing}: {_reply(exc)}; "
        "check the server is running and the URL's host and port"
    )


def _reply(exc: BaseException) -> str:
    # aiormq puts (errno, text) or (text,) in args; str() of the first alone may be "111".
    parts = [str(a) for a in exc.args if isinstance(a, str)] or [str(exc)]
    text = "; ".join(parts) or type(exc).__name__
    return text.splitlines()[0][:200]


class Link:
    """The connection and its confirming publish channel."""

    def __init__(self, opts: AmqpOptions) -> None:
        self.opts = opts
        self.conn: AbstractRobustConnection | None = None
        self._pub: AbstractRobustChannel | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        async with self._lock:
            if self.conn is not None and not self.conn.is_closed:
                return
            try:
                async with asyncio.timeout(self.opts.timeout):
                    self.conn = await aio_pika.connect_robust(
                        self.opts.connect_url,
                        timeout=self.opts.timeout,
                        client_properties={"connection_name": "scorebus"},
                    )
                    self._pub = await self.conn.channel(publisher_confirms=True)
            except (aiormq.exceptions.AMQPError, OSError, TimeoutError) as exc:
                await self._abandon()
                raise translate(exc, self.opts, "connecting") from exc

    async def _abandon(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def close(self) -> None:
        await self._abandon()

    async def channel(self, prefetch: int = 0) -> AbstractRobustChannel:
        """A new robust channel (reopened, with its consumers, after a reconnect)."""
        assert self.conn is not None
        ch: AbstractRobustChannel = await self.conn.channel(publisher_confirms=False)
        if prefetch:
            await ch.set_qos(prefetch_count=prefetch)
        return ch

    async def _publish_channel(self) -> aiormq.Channel:
        """The publish channel's current AMQP channel, once aio-pika has reopened it
        after a reconnect (for a moment after a connection drops, the old one is
        still handed out, closed)."""
        assert self._pub is not None
        while True:
            await self._pub.ready()
            ch = cast(aiormq.Channel, await self._pub.get_underlay_channel())
            if not ch.is_closed:
                return ch
            await asyncio.sleep(0.02)

    async def publish(self, items: Sequence[Outgoing], doing: str = "publishing") -> None:
        """Publish all at once and wait for every publisher confirm.

        Raises:
            BrokerUnavailable: the connection failed or RabbitMQ nacked a message
                (some of the batch may be stored: publishing is at-least-once).
        """
        if not items:
            return
        assert self._pub is not None
        try:
            async with asyncio.timeout(self.opts.timeout):
                ch = await self._publish_channel()
                # Every outcome is collected, so no failed publish is left unobserved.
                confirms = await asyncio.gather(
                    *(
                        ch.basic_publish(
                            body, exchange=ex, routing_key=key, properties=p, wait=False
                        )
                        for ex, key, body, p in items
                    ),
                    return_exceptions=True,
                )
            failed = next((c for c in confirms if isinstance(c, BaseException)), None)
            if isinstance(failed, Exception):
                raise failed
            if failed is not None:  # aiormq cancels pending confirms of a closing channel
                raise aiormq.exceptions.ChannelInvalidStateError("channel closed") from failed
        except _SDK_ERRORS as exc:
            raise translate(exc, self.opts, doing) from exc
        refused = sum(not isinstance(c, spec.Basic.Ack) for c in confirms)
        if refused:
            raise BrokerUnavailable(
                f"RabbitMQ at {self.opts.display} refused {refused} of {len(items)} messages "
                f"while {doing} (publisher nack: a queue is full or a node is down)"
            )

    @contextlib.asynccontextmanager
    async def guard(self, doing: str) -> AsyncIterator[None]:
        """Bound the block by ``timeout`` and translate SDK errors raised in it."""
        try:
            async with asyncio.timeout(self.opts.timeout):
                yield
        except _SDK_ERRORS as exc:
            raise translate(exc, self.opts, doing) from exc

    @contextlib.asynccontextmanager
    async def scratch(self, doing: str) -> AsyncIterator[AbstractChannel]:
        """A short-lived plain channel for declarations and browsing.

        A refused declaration closes its channel; on a robust channel aio-pika would
        then reopen it in the background, so admin work never uses one.
        """
        assert self.conn is not None
        ch: AbstractChannel | None = None
        try:
            async with asyncio.timeout(self.opts.timeout):
                await self.conn.ready()
                transport = self.conn.transport
                if transport is None:
                    raise BrokerUnavailable(f"RabbitMQ at {self.opts.display}: reconnecting")
                ch = await transport.connection.channel(publisher_confirms=False)
                yield ch
        except _SDK_ERRORS as exc:
            raise translate(exc, self.opts, doing) from exc
        finally:
            if ch is not None and not ch.is_closed:
                with contextlib.suppress(*_SDK_ERRORS):
                    await ch.close()

    async def declare_queue(self, name: str, arguments: dict[str, Any]) -> int:
        """Declare (idempotently) and return the number of ready messages.

        A passive declare would do, but RabbitMQ 3.x answers 0 for a quorum queue.
        """
        async with self.scratch(f"declaring queue {name!r}") as ch:
            ok = await ch.queue_declare(name, durable=True, arguments=arguments)
        return int(ok.message_count or 0)

    async def count(self, queues: Sequence[tuple[str, dict[str, Any]]]) -> list[int]:
        """Ready messages of each ``(queue, arguments)``, declared on one channel."""
        out = []
        async with self.scratch("counting messages") as ch:
            for name, arguments in queues:
                ok = await ch.queue_declare(name, durable=True, arguments=arguments)
                out.append(int(ok.message_count or 0))
        return out

    async def delete(self, queues: Sequence[str], exchanges: Sequence[str]) -> None:
        async with self.scratch("deleting queues and exchanges") as ch:
            for q in queues:
                await ch.queue_delete(q)
            for ex in exchanges:
                await ch.exchange_delete(ex)

    @contextlib.asynccontextmanager
    async def browse(
        self, queue: str, limit: int
    ) -> AsyncIterator[tuple[AbstractChannel, list[DeliveredMessage]]]:
        """Up to ``limit`` messages of ``queue``, held unacknowledged on a channel of
        their own: ack the ones to remove; closing the channel returns the rest."""
        async with self.scratch(f"reading queue {queue!r}") as ch:
            got: list[DeliveredMessage] = []
            try:
                # Passive: reading must not create what is missing.
                await ch.queue_declare(queue, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                yield ch, got
                return
            while len(got) < limit:
                msg = await ch.basic_get(queue)
                if not isinstance(msg.delivery, spec.Basic.GetOk):
                    break
                got.append(msg)
            yield ch, got
