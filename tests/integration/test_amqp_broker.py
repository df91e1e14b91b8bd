"""The RabbitMQ broker against a real server: what the contract suite does not pin.

Connection errors, a connection cut mid-run, RabbitMQ's own delivery limit,
delay queues per band, the registry seen from a second process, and acks with
``multiple=True`` that must never cover a delivery still leased.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest
from aiormq import spec
from tests.contract.backend_amqp import ThrowawayBroker, amqp_url
from tests.servers import require_server

from scorebus.brokers import Broker, Delivery, open_broker
from scorebus.brokers.amqp import AmqpBroker, AmqpSubscription
from scorebus.errors import BrokerUnavailable, ConfigError
from scorebus.events import Event


def _names() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return f"topic-{suffix}", f"sub-{suffix}"


def _events(n: int) -> list[Event]:
    return [Event.new("test.event", {"n": i}) for i in range(n)]


async def _pull_n(sub: AmqpSubscription, n: int, timeout_s: float = 3.0) -> list[Delivery]:
    got: list[Delivery] = []
    give_up = time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < give_up:
        got += await sub.pull(n - len(got), 0.05)
    return got


def _run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


class _Proxy:
    """A TCP relay to RabbitMQ whose connections can be cut, like a network failure."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> _Proxy:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        self.cut()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._pairs.append((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.transport.abort()

    def cut(self) -> None:
        for a, b in self._pairs:
            a.transport.abort()
            b.transport.abort()
        self._pairs.clear()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- URL and connection errors


def test_url_options_are_parsed_and_the_password_never_shows() -> None:
    broker = open_broker("amqp://alice:s3cret@rabbit.example:5673/prod?prefix=fraud&prefetch=64")
    assert isinstance(broker, AmqpBroker) and isinstance(broker, Broker)
    assert "s3cret" not in broker.url
    assert broker.url.startswith("amqp://alice:***@rabbit.example:5673/prod?prefix=fraud")
    assert "prefetch=64" in broker.url

    with pytest.raises(ConfigError, match=r"unknown option 'group'.*valid options are prefix"):
        AmqpBroker("amqp://localhost/?group=x")
    with pytest.raises(ConfigError, match=r"prefetch=0: must be in 1\.\.65535"):
        AmqpBroker("amqp://localhost/?prefetch=0")
    with pytest.raises(ConfigError, match="delivery_limit"):
        AmqpBroker("amqp://localhost/?delivery_limit=many")


def test_bad_credentials_are_a_one_line_config_error_without_the_password() -> None:
    port = require_server("rabbitmq")

    async def scenario() -> None:
        with pytest.raises(ConfigError) as err:
            async with AmqpBroker(f"amqp://guest:wrong-pw-42@127.0.0.1:{port}/"):
                pass
        message = str(err.value)
        assert f"amqp://127.0.0.1:{port}/" in message
        assert "user name and password" in message
        assert "wrong-pw-42" not in message and "\n" not in message

    _run(scenario)


def test_a_refused_connection_is_broker_unavailable_naming_the_server() -> None:
    port = _free_port()

    async def scenario() -> None:
        broker = AmqpBroker(f"amqp://guest:topsecret@127.0.0.1:{port}/?timeout=5")
        with pytest.raises(BrokerUnavailable) as err:
            await broker.publish("t", _events(1))
        message = str(err.value)
        assert f"amqp://127.0.0.1:{port}/" in message
        assert "check the server is running" in message
        assert "topsecret" not in message
        await broker.close()

    _run(scenario)


def test_a_missing_vhost_is_a_config_error_naming_it() -> None:
    port = require_server("rabbitmq")

    async def scenario() -> None:
        with pytest.raises(ConfigError, match="vhost 'no-such-vhost'"):
            async with AmqpBroker(f"amqp://guest:guest@127.0.0.1:{port}/no-such-vhost"):
                pass

    _run(scenario)


def test_names_the_client_cannot_send_are_a_config_error() -> None:
    async def scenario() -> None:
        async with ThrowawayBroker(amqp_url()) as broker:
            with pytest.raises(ConfigError, match="may use only letters"):
                await broker.subscription("topic~1", "sub")

    _run(scenario)


# ---------------------------------------------------------------- a connection cut mid-run


def test_a_cut_connection_reconnects_redelivers_and_stale_settles_do_not_raise() -> None:
    async def scenario() -> None:
        topic, name = _names()
        port = require_server("rabbitmq")
        prefix = f"sbtest-{uuid.uuid4().hex[:12]}"
        async with (
            _Proxy(port) as proxy,
            ThrowawayBroker(
                f"amqp://guest:guest@127.0.0.1:{proxy.port}/?prefix={prefix}&reconnect_interval=0.1"
            ) as broker,
        ):
            sub = await broker.subscription(topic, name, ack_deadline_s=30)
            events = _events(3)
            await broker.publish(topic, events)
            old = await _pull_n(sub, 3)
            assert [d.attempt for d in old] == [1, 1, 1]

            proxy.cut()
            # Publishing while the client reconnects either waits for the new channel
            # or fails as transient (the runtime retries): never a hang, never a loss.
            (extra,) = _events(1)
            for _ in range(100):
                try:
                    await broker.publish(topic, [extra])
                    break
                except BrokerUnavailable:
                    await asyncio.sleep(0.1)

            again = await _pull_n(sub, 4, timeout_s=15)
            attempts = {d.event.id: d.attempt for d in again}
            assert attempts == {**{e.id: 2 for e in events}, extra.id: 1}

            # Settling deliveries of the dead channel is a no-op, never an error.
            await sub.ack(old[:1])
            await sub.nack(old[1:2], 0.5)
            await sub.dead_letter([(old[2], "schema", "bad")])
            await sub.extend(old, 10)

            await sub.ack(again)
            await broker.publish(topic, _events(1))
            (late,) = await _pull_n(sub, 1)
            await late.ack()
            stats = {s.subscription: s for s in await broker.stats()}[name]
            assert (stats.pending, stats.in_flight, stats.acked) == (0, 0, 5)
            assert await broker.dead_letters() == []

    _run(scenario)


# ---------------------------------------------------------------- settling


def test_acking_every_other_delivery_never_acks_the_leased_ones_between() -> None:
    async def scenario() -> None:
        topic, name = _names()
        async with ThrowawayBroker(amqp_url()) as broker:
            sub = await broker.subscription(topic, name, ack_deadline_s=0.3)
            events = _events(10)
            await broker.publish(topic, events)
            got = await _pull_n(sub, 10)
            await sub.ack(got[1::2])
            await sub.ack(got[::2][:1])  # the lowest tag: a multiple ack is now safe up to it

            # The other four leases run out and come back; the acked six never do.
            back = await _pull_n(sub, 4, timeout_s=3)
            assert sorted(d.event.id for d in back) == sorted(d.event.id for d in got[2::2])
            assert all(d.attempt == 2 for d in back)
            await sub.ack(back)
            assert await sub.pull(10, 0.5) == []
            stats = {s.subscription: s for s in await broker.stats()}[name]
            assert (stats.pending, stats.in_flight, stats.acked) == (0, 0, 10)

    _run(scenario)


def test_a_short_retry_is_not_held_behind_a_long_one() -> None:
    async def scenario() -> None:
        topic, name = _names()
        async with ThrowawayBroker(amqp_url()) as broker:
            sub = await broker.subscription(topic, name)
            await broker.publish(topic, _events(2))
            slow, fast = await _pull_n(sub, 2)
            await slow.nack(5.0)
            nacked = time.monotonic()
            await fast.nack(0.1)

            (back,) = await _pull_n(sub, 1, timeout_s=2)
            assert back.event.id == fast.event.id
            assert back.attempt == 2
            assert time.monotonic() - nacked < 1.5
            # The slow one waits in its delay queue: in flight, seen from another process.
            async with AmqpBroker(amqp_url_of(broker)) as other:
                stats = {s.subscription: s for s in await other.stats()}[name]
                assert (stats.pending, stats.in_flight) == (0, 1)

    _run(scenario)


def amqp_url_of(broker: AmqpBroker) -> str:
    o = broker._opts
    return f"amqp://{o.user}:{o.password}@{o.host}:{o.port}/?prefix={o.prefix}"


# ---------------------------------------------------------------- dead letters and registry


def test_rabbitmq_delivery_limit_dead_letters_land_in_the_dlq_and_replay() -> None:
    async def scenario() -> None:
        topic, name = _names()
        async with ThrowawayBroker(amqp_url() + "&delivery_limit=1") as broker:
            sub = await broker.subscription(topic, name)
            (event,) = _events(1)
            await broker.publish(topic, [event])
            for _ in range(2):
                (d,) = await _pull_n(sub, 1)
                await d.nack()  # a consumer that never settles it

            assert await sub.pull(1, 0.3) == []
            (letter,) = await broker.dead_letters()
            assert (letter.event_id, letter.reason, letter.attempts) == (
                event.id,
                "delivery_limit",
                2,
            )
            assert "x-delivery-limit=1" in letter.error
            assert letter.subscription == name and letter.topic == topic
            # The id is stable between listings, so it can be shown and replayed.
            assert [dl.id for dl in await broker.dead_letters()] == [letter.id]

            assert await broker.replay([letter.id]) == 1
            (back,) = await _pull_n(sub, 1)
            assert (back.event.id, back.attempt) == (event.id, 1)
            await back.ack()

    _run(scenario)


def test_a_second_process_sees_subscriptions_letters_and_topic_conflicts() -> None:
    async def scenario() -> None:
        topic, name = _names()
        async with ThrowawayBroker(amqp_url()) as broker:
            sub = await broker.subscription(topic, name)
            await broker.publish(topic, _events(3))
            await broker.publish(f"{topic}-early", _events(2))
            (d,) = await _pull_n(sub, 1)
            await sub.dead_letter([(d, "schema", "$.amount: expected float")])

            # Closing the consumer returns what it had prefetched to the queue; while it
            # runs, another process cannot see those (AMQP counts ready messages only).
            await sub.close()
            async with AmqpBroker(amqp_url_of(broker)) as other:
                stats = {(s.subscription, s.topic): s for s in await other.stats()}
                assert stats[(name, topic)].pending == 2
                assert stats[(name, topic)].dead_lettered == 1
                assert stats[("(unclaimed)", f"{topic}-early")].pending == 2
                (letter,) = await other.dead_letters(subscription=name)
                assert (letter.event_id, letter.reason) == (d.event.id, "schema")
                with pytest.raises(ConfigError, match=f"{name}.*{topic}"):
                    await other.subscription(f"{topic}-other", name)

    _run(scenario)


def test_readers_of_the_registry_in_other_processes_always_see_all_of_it() -> None:
    # A read takes the registry's entries off the queue for a moment; without the
    # readers' lock a status command beside polling workers could miss a subscription.
    async def scenario() -> None:
        topic, name = _names()
        names = {f"{name}-{i}" for i in range(3)}
        async with ThrowawayBroker(amqp_url()) as broker:
            for n in names:
                await broker.subscription(topic, n)
            url = amqp_url_of(broker)
            async with AmqpBroker(url) as a, AmqpBroker(url) as b:

                async def seen(reader: Broker) -> list[set[str]]:
                    return [{s.subscription for s in await reader.stats()} for _ in range(15)]

                views = [v for each in await asyncio.gather(seen(a), seen(b)) for v in each]
            assert all(names <= v for v in views), [len(names & v) for v in views]

    _run(scenario)


def test_a_plain_amqp_message_is_delivered_as_an_amqp_message_event() -> None:
    async def scenario() -> None:
        topic, name = _names()
        async with ThrowawayBroker(amqp_url()) as broker:
            sub = await broker.subscription(topic, name)
            props = spec.Basic.Properties(content_type="text/plain", message_id="m-1")
            await broker._link.publish([(broker._opts.exchange(topic), "", b"hello", props)])

            (d,) = await _pull_n(sub, 1)
            assert (d.event.id, d.event.type, d.event.data) == ("m-1", "amqp.message", b"hello")
            assert d.event.datacontenttype == "text/plain"
            await d.ack()

    _run(scenario)
