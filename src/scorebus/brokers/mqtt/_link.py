"""One MQTT connection that outlives a broker restart, and the one place SDK
errors are translated.

aiomqtt drives paho-mqtt on the event loop (connect, socket I/O, SUBSCRIBE).
Three things scorebus needs are paho's own and aiomqtt 2.x does not expose
them, so the link reaches the paho client (``aiomqtt.Client._client``):
manual acknowledgement (``manual_ack_set`` / ``ack(mid, 1)``: a QoS 1
message stays unacked at Mosquitto until scorebus settles it), each message
with its packet id and properties (``on_message``), and pipelined QoS 1
publishes (:mod:`._pubacks`).

A first connection that fails raises at once (``BrokerUnavailable`` naming the
URL, or ``ConfigError`` for refused credentials). A connection lost later is
re-established with backoff (50 ms doubling to 2 s) for as long as the link is
open; each new connection bumps ``epoch`` (message ids of an older connection
mean nothing), re-subscribes, and calls ``on_reconnect``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from ...errors import BrokerUnavailable, ConfigError
from ._client import connect, new_client
from ._options import MqttOptions
from ._pubacks import LinkLost, PubAcks
from ._wire import Outgoing

log = logging.getLogger(__name__)


class Link:
    """One client id's connection (see the module docstring).

    Args:
        persistent: keep the session (and its subscriptions and unacked
            messages) at Mosquitto when disconnected.
        manual_ack: PUBACK only on :meth:`ack`; otherwise paho acks on receipt.
        on_message: called on the event loop with each paho message (not the
            link's own barrier markers).
        will: a topic whose retained message Mosquitto deletes if this
            connection dies without a clean disconnect.
    """

    def __init__(
        self,
        opts: MqttOptions,
        client_id: str,
        *,
        persistent: bool = False,
        manual_ack: bool = False,
        on_message: Callable[[paho.MQTTMessage], None] | None = None,
        will: str | None = None,
        receive_max: int | None = None,
    ) -> None:
        self.opts = opts
        self.client_id = client_id
        self.persistent = persistent
        self.manual_ack = manual_ack
        self.on_message = on_message
        self.will = will
        self.receive_max = receive_max
        self.sync_topic = opts.sync(client_id)
        self.filters: list[str] = []
        self.epoch = 0
        self.session_present = False
        self.connected = asyncio.Event()
        self.on_lost: Callable[[], None] | None = None
        self.on_reconnect: Callable[[], Awaitable[object]] | None = None
        self._client: aiomqtt.Client | None = None
        self._lost = asyncio.Event()
        self._acks = PubAcks(opts.where, opts.timeout_s)
        self._barriers: dict[bytes, asyncio.Future[None]] = {}
        self._supervisor: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def pclient(self) -> paho.Client:
        assert self._client is not None
        return self._client._client

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Connect (raising at once if Mosquitto cannot be had) and keep connected."""
        await self._connect()
        self._supervisor = asyncio.create_task(self._supervise())

    async def close(self, *, end_session: bool = False) -> None:
        """Disconnect cleanly (no will); ``end_session`` also deletes the session."""
        self._closed = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        await self._disconnect()
        if end_session:
            await self.end_session()

    async def end_session(self) -> None:
        """Delete this client id's session at Mosquitto (a clean connect, then disconnect)."""
        clean = Link(self.opts, self.client_id)
        with contextlib.suppress(BrokerUnavailable):
            await clean._connect(subscribe=False)
            await clean._disconnect()

    def _build(self) -> aiomqtt.Client:
        client = new_client(
            self.opts,
            self.client_id,
            persistent=self.persistent,
            manual_ack=self.manual_ack,
            receive_max=self.receive_max,
            will=self.will,
        )
        p = client._client
        on_connect: Any = p.on_connect
        on_disconnect: Any = p.on_disconnect

        def connected(c: Any, ud: Any, flags: Any, rc: Any, props: Any = None) -> None:
            self.session_present = bool(flags.session_present)
            on_connect(c, ud, flags, rc, props)

        def disconnected(c: Any, ud: Any, flags: Any, rc: Any, props: Any = None) -> None:
            on_disconnect(c, ud, flags, rc, props)
            # aiomqtt keeps the error for a message iterator we do not use: mark it seen.
            gone = client._disconnected
            if gone.done() and not gone.cancelled():
                gone.exception()
            if client is self._client:
                self._lost.set()

        p.on_connect = connected
        p.on_disconnect = disconnected
        p.on_message = self._on_message
        p.on_publish = self._acks.on_publish
        return client

    async def _connect(self, *, subscribe: bool = True) -> None:
        client = self._build()
        self._lost.clear()
        self._client = client
        # Bumped first: messages of the new connection may arrive before connect returns.
        self.epoch += 1
        await connect(client, self.opts)
        if subscribe:
            await self._subscribe([*self.filters, self.sync_topic])
        self.connected.set()

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        was_connected = self.connected.is_set()
        self.connected.clear()
        self._acks.fail_all()
        if client is not None and was_connected:
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await asyncio.wait_for(client.__aexit__(None, None, None), self.opts.timeout_s)

    async def _supervise(self) -> None:
        while not self._closed:
            await self._lost.wait()
            self.connected.clear()
            self._acks.fail_all()
            if self.on_lost is not None:
                self.on_lost()
            log.warning(
                "MQTT connection %s to %s lost; reconnecting", self.client_id, self.opts.where
            )
            delay = 0.05
            while not self._closed:
                await asyncio.sleep(delay)
                try:
                    await self._connect()
                except (BrokerUnavailable, ConfigError, aiomqtt.MqttError) as exc:
                    log.debug("reconnect %s failed: %s", self.client_id, exc)
                    delay = min(delay * 2, 2.0)
                    continue
                log.warning(
                    "MQTT connection %s to %s re-established", self.client_id, self.opts.where
                )
                break
            if self.on_reconnect is not None:
                try:
                    await self.on_reconnect()
                except BrokerUnavailable as exc:
                    log.warning("after reconnecting %s: %s", self.client_id, exc)

    async def wait_connected(self) -> None:
        """Wait for the connection, at most ``retry`` seconds (then BrokerUnavailable)."""
        if self.connected.is_set():
            return
        try:
            await asyncio.wait_for(self.connected.wait(), self.opts.retry_s)
        except TimeoutError:
            raise BrokerUnavailable(
                f"the MQTT broker at {self.opts.where} has been unreachable for"
                f" {self.opts.retry_s:g} s: is Mosquitto running?"
            ) from None

    # ------------------------------------------------------------ subscriptions

    async def subscribe(self, filters: Sequence[str]) -> None:
        """Subscribe at QoS 1, now and after every reconnect."""
        self.filters += [f for f in filters if f not in self.filters]
        await self._subscribe(filters)

    async def unsubscribe(self, filters: Sequence[str]) -> None:
        self.filters = [f for f in self.filters if f not in filters]
        if self._client is not None and self.connected.is_set():
            try:
                await self._client.unsubscribe(list(filters))
            except aiomqtt.MqttError as exc:
                raise LinkLost(f"MQTT unsubscribe on {self.opts.where} failed: {exc}") from exc

    async def _subscribe(self, filters: Sequence[str]) -> None:
        assert self._client is not None
        opts = [SubscribeOptions(qos=1) for _ in filters]
        topics: list[Any] = list(
            zip(filters, opts if self.opts.v5 else [1] * len(filters), strict=True)
        )
        try:
            codes = await self._client.subscribe(topics)
        except aiomqtt.MqttError as exc:
            raise LinkLost(f"MQTT subscribe on {self.opts.where} failed: {exc}") from exc
        for f, code in zip(filters, codes, strict=True):
            value = code.value if isinstance(code, ReasonCode) else int(str(code))
            if value >= 0x80:
                raise ConfigError(
                    f"the MQTT broker at {self.opts.where} refused the subscription {f!r} ({code}):"
                    " check Mosquitto's ACLs and that shared subscriptions are allowed"
                )

    # ------------------------------------------------------------ messages

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        # paho re-raises callback errors out of its read loop, which would look like a
        # lost connection: never let one escape.
        try:
            if msg.topic == self.sync_topic:
                fut = self._barriers.pop(bytes(msg.payload), None)
                if fut is not None and not fut.done():
                    fut.set_result(None)
                if self.manual_ack:
                    client.ack(msg.mid, 1)
            elif self.on_message is not None:
                self.on_message(msg)
        except Exception:
            log.exception("MQTT message on %r could not be taken in", msg.topic)

    def ack(self, mid: int, epoch: int) -> None:
        """PUBACK message ``mid`` if it came on the current connection."""
        if epoch == self.epoch and self._client is not None and self.connected.is_set():
            self.pclient.ack(mid, 1)

    # ------------------------------------------------------------ publishing

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        """Publish at QoS 1 and wait for every PUBACK (see :mod:`._pubacks`).

        Raises:
            LinkLost: not connected, or the connection dropped first.
            BrokerUnavailable: Mosquitto refused a message.
        """
        connected = self._client is not None and self.connected.is_set()
        await self._acks.publish(self.pclient if connected else None, messages)

    async def barrier(self) -> bool:
        """Wait until every message Mosquitto routed to this session so far has arrived.

        A marker published to this client's own sync topic queues behind them.
        Returns False if it did not come back within ``timeout``.
        """
        token = uuid.uuid4().bytes
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._barriers[token] = fut
        try:
            await self.publish([Outgoing(self.sync_topic, token)])
            await asyncio.wait_for(fut, self.opts.timeout_s)
        except (TimeoutError, BrokerUnavailable):
            return False
        finally:
            self._barriers.pop(token, None)
        return True
