"""One NATS connection, the prefix's JetStream stream, and riding out outages.

The first connection fails fast (one short attempt, then a one-line error that
names the server). Once connected, nats-py reconnects for as long as it takes
while each operation retries with backoff for ``retry`` seconds and then raises
:class:`BrokerUnavailable`, which the runtime answers with its own backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext, api

from ...errors import BrokerUnavailable, ConfigError, TooLargeError
from .options import NatsOptions

log = logging.getLogger(__name__)
T = TypeVar("T")
Message = tuple[dict[str, str], bytes]

# Errors that a reconnect or a JetStream leader coming back can heal. Python's
# TimeoutError (and so nats.errors.TimeoutError) is an OSError.
TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    nats.errors.NoRespondersError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    nats.errors.ConnectionReconnectingError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.TooManyStalledMsgsError,
)
_CHUNK = 2000  # publishes in flight per round; bounds what one timeout can strand


def describe(exc: BaseException) -> str:
    return str(exc).strip() or type(exc).__name__


class Connection:
    """The broker's connection, opened on first use (with the stream ensured)."""

    def __init__(self, opts: NatsOptions) -> None:
        self.opts = opts
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._lock = asyncio.Lock()

    async def client(self) -> Client:
        """The connected client.

        Raises:
            BrokerUnavailable: the server cannot be reached.
            ConfigError: bad credentials, or the stream cannot be made for the prefix.
        """
        if self._nc is None or self._nc.is_closed:
            async with self._lock:
                if self._nc is None or self._nc.is_closed:
                    self._nc = self._js = None  # the callbacks tell a first connect by this
                    nc = await self._connect()
                    js = nc.jetstream(timeout=self.opts.request_timeout_s)
                    try:
                        await self._ensure_stream(js)
                    except BaseException:
                        await nc.close()
                        raise
                    self._nc, self._js = nc, js
        assert self._nc is not None
        return self._nc

    def current(self) -> Client | None:
        """The client if it is connected now; never connects."""
        nc = self._nc
        return nc if nc is not None and nc.is_connected else None

    async def jetstream(self) -> JetStreamContext:
        await self.client()
        assert self._js is not None
        return self._js

    async def ready(self) -> Client:
        """The client once it is connected, waiting out a reconnect for ``retry`` seconds."""
        nc = await self.client()
        give_up = time.monotonic() + self.opts.retry_s
        pause = 0.02
        while not nc.is_connected:
            if nc.is_closed or time.monotonic() >= give_up:
                raise BrokerUnavailable(
                    f"NATS at {self.opts.display} has been unreachable for "
                    f"{self.opts.retry_s:g} s (reconnecting): check that the server is up"
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)
        return nc

    async def _connect(self) -> Client:
        opts = self.opts
        failures: list[BaseException] = []

        async def on_error(exc: Exception) -> None:
            if self._nc is None:
                failures.append(exc)
            else:
                log.debug("NATS at %s: %s", opts.display, describe(exc))

        down = False  # nats-py reports a disconnect once more per failed reconnect

        async def on_disconnect() -> None:
            nonlocal down
            if not down and self._nc is not None:
                down = True
                log.warning("lost the connection to NATS at %s; reconnecting", opts.display)

        async def on_reconnect() -> None:
            nonlocal down
            down = False
            log.warning("reconnected to NATS at %s", opts.display)

        try:
            nc = await nats.connect(
                servers=[opts.server],
                name="scorebus",
                connect_timeout=opts.connect_timeout_s,
                # Two quick tries for the first connection: a wrong URL fails fast.
                max_reconnect_attempts=1,
                reconnect_time_wait=0.1,
                error_cb=on_error,
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect,
            )
        except (nats.errors.Error, OSError) as exc:
            # The server answers a bad password with -ERR and closes; the retry may
            # then see only a reset: any refusal on the way is the one to report.
            refused = [f for f in failures if "authorization" in describe(f).lower()]
            cause = refused[0] if refused else failures[-1] if failures else exc
            if refused or "authorization" in describe(cause).lower():
                raise ConfigError(
                    f"NATS at {opts.display} refused the connection ({describe(cause)}):"
                    " check USER:PASSWORD in the broker URL"
                ) from exc
            raise BrokerUnavailable(
                f"cannot connect to NATS at {opts.display} ({describe(cause)}): check that"
                " nats-server is running with JetStream (-js) and the URL's host and port"
            ) from exc
        # Connected once: from now on ride out restarts, however long they take.
        nc.options["max_reconnect_attempts"] = -1
        nc.options["reconnect_time_wait"] = 0.5
        return nc

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        opts = self.opts
        wanted = f"{opts.prefix}.>"
        try:
            info = await js.stream_info(opts.stream)
        except nats.js.errors.NotFoundError:
            info = None
        except TRANSIENT as exc:
            raise BrokerUnavailable(
                f"JetStream does not answer at {opts.display}: start nats-server with -js,"
                " or enable JetStream for this account"
            ) from exc
        if info is None:
            config = api.StreamConfig(
                name=opts.stream,
                description=f"scorebus topics under {opts.prefix}",
                subjects=[wanted],
                # Limits, not interest: a message published before any subscription
                # exists must wait for the first one (interest retention drops it).
                retention=api.RetentionPolicy.LIMITS,
                storage=api.StorageType(opts.storage),
                max_age=opts.max_age_s or None,
                duplicate_window=opts.dedupe_window_s,
                num_replicas=opts.replicas,
                discard=api.DiscardPolicy.OLD,
            )
            try:
                info = await js.add_stream(config)
            except nats.js.errors.APIError as exc:
                try:  # another process may have made it a moment ago
                    info = await js.stream_info(opts.stream)
                except nats.js.errors.NotFoundError:
                    raise ConfigError(
                        f"cannot create the JetStream stream {opts.stream!r} for {wanted} on"
                        f" {opts.display}: {exc.description}"
                    ) from exc
        subjects = info.config.subjects or []
        if wanted not in subjects:
            raise ConfigError(
                f"JetStream stream {opts.stream!r} on {opts.display} holds {subjects}, not"
                f" {wanted!r}: choose another ?stream= or ?prefix="
            )

    async def retry(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        """``op()``, retried with backoff on transient errors for ``retry`` seconds.

        Raises:
            BrokerUnavailable: still failing after ``retry`` seconds, or a NATS error
                that waiting cannot heal (the message names the server and the cause).
        """
        give_up = time.monotonic() + self.opts.retry_s
        pause = 0.05
        while True:
            try:
                return await op()
            except nats.errors.ConnectionClosedError as exc:
                raise BrokerUnavailable(
                    f"{what}: the connection to NATS at {self.opts.display} is closed"
                ) from exc
            except TRANSIENT as exc:
                if time.monotonic() + pause > give_up:
                    raise BrokerUnavailable(
                        f"{what} on NATS at {self.opts.display} still failing after"
                        f" {self.opts.retry_s:g} s ({describe(exc)}): check the server"
                        " and its JetStream"
                    ) from exc
                log.info("%s on NATS at %s: %s; retrying", what, self.opts.display, describe(exc))
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
            except nats.errors.Error as exc:
                raise BrokerUnavailable(
                    f"{what} on NATS at {self.opts.display} failed: {describe(exc)}"
                ) from exc

    async def publish(self, subject: str, messages: Sequence[Message]) -> None:
        """Publish and wait for JetStream's acks; a retry resends only the unacked.

        Resending is safe because every message carries ``Nats-Msg-Id``.
        """
        for start in range(0, len(messages), _CHUNK):
            todo = list(messages[start : start + _CHUNK])

            async def once() -> None:
                nonlocal todo
                todo, error = await self._publish_once(subject, todo)
                if error is not None:
                    raise error

            await self.retry(f"publishing {len(todo)} messages to {subject}", once)

    async def _publish_once(
        self, subject: str, todo: list[Message]
    ) -> tuple[list[Message], BaseException | None]:
        """Send ``todo``; the messages not acked by JetStream, and the first error."""
        js = await self.jetstream()
        sent: list[asyncio.Future[api.PubAck]] = []
        error: BaseException | None = None
        try:
            for headers, body in todo:
                # No wait_stall: it costs a task (and a socket write) per message, and a
                # round never holds more than _CHUNK of nats-py's 4000 in-flight slots.
                sent.append(await js.publish_async(subject, body, headers=headers))
        except nats.errors.MaxPayloadError as exc:
            raise TooLargeError(
                f"a message of {len(todo[len(sent)][1])} bytes is over the max_payload of"
                f" NATS at {self.opts.display}"
            ) from exc
        except TRANSIENT as exc:
            error = exc
        if sent:
            await asyncio.wait(sent, timeout=self.opts.request_timeout_s)
        failed = todo[len(sent) :]
        for message, future in zip(todo, sent, strict=False):
            if not future.done():
                future.cancel()  # frees its slot in nats-py's in-flight window
                failed.append(message)
                error = error or nats.errors.TimeoutError()
            elif future.exception() is not None:
                failed.append(message)
                error = error or future.exception()
        return failed, error

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(nats.errors.Error, OSError):
                await nc.flush(timeout=1)
            await nc.close()
