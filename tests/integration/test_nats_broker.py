"""The NATS JetStream broker against the real server: what the broker and worker
contracts do not pin (URL and connection errors, the consumer it configures,
dedupe, replay to one subscription, foreign messages, stats, a server restart).
The contracts themselves run through ``tests/contract/backend_nats.py``."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from nats.js import api
from tests.contract.backend_nats import delete_stream, nats_url

from scorebus.brokers.base import Delivery, Subscription
from scorebus.brokers.nats import NatsBroker
from scorebus.errors import BrokerUnavailable, ConfigError, TooLargeError
from scorebus.events import Event, encode_structured

Scenario = Callable[[NatsBroker], Awaitable[None]]


def _run(url: str, scenario: Scenario) -> None:
    async def main() -> None:
        broker = NatsBroker(url)
        try:
            async with broker:
                await scenario(broker)
        finally:
            async with NatsBroker(url) as cleaner:
                nc = cleaner._conn.current()
                assert nc is not None
                await delete_stream(nc, broker.options.stream)

    asyncio.run(main())


async def _pull_n(sub: Subscription, n: int, timeout_s: float = 2.0) -> list[Delivery]:
    got: list[Delivery] = []
    give_up = time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < give_up:
        got += await sub.pull(n - len(got), 0.05)
    return got


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_refused_is_one_line_naming_the_server(tmp_path: Path) -> None:
    port = _free_port()

    async def scenario() -> None:
        async with NatsBroker(f"nats://127.0.0.1:{port}?dlq={tmp_path}/dl.db"):
            pass

    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as caught:
        asyncio.run(scenario())
    message = str(caught.value)
    assert f"nats://127.0.0.1:{port}" in message
    assert "nats-server is running" in message
    assert "\n" not in message
    assert time.monotonic() - started < 3.0


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("nats://127.0.0.1:4222?colour=blue", "unknown nats URL option 'colour'.*valid options"),
        ("nats://127.0.0.1:4222?storage=tape", "storage='tape'"),
        ("nats://127.0.0.1:4222?max_age=soon", "max_age='soon'"),
        ("nats://127.0.0.1:4222?prefix=a..b", "prefix='a..b'"),
        ("nats://127.0.0.1:4222?stream=a.b", "no dots in stream names"),
        ("http://127.0.0.1:4222", "bad NATS URL"),
    ],
)
def test_a_malformed_url_is_a_config_error(url: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        NatsBroker(url)


def test_url_options_reach_the_stream_and_the_password_stays_out_of_messages(
    tmp_path: Path,
) -> None:
    broker = NatsBroker("nats://me:secret@127.0.0.1?max_age=7d&dedupe_window=500ms&prefix=a.b")
    opts = broker.options
    assert (opts.server, opts.display) == (
        "nats://me:secret@127.0.0.1:4222",
        "nats://127.0.0.1:4222",
    )
    assert (opts.max_age_s, opts.dedupe_window_s, opts.stream) == (7 * 86400, 0.5, "a_b")

    url = nats_url(tmp_path, max_age="1h", dedupe_window="30s")

    async def scenario(broker: NatsBroker) -> None:
        js = (await broker._conn.client()).jetstream()
        config = (await js.stream_info(broker.options.stream)).config
        assert config.subjects == [f"{broker.options.prefix}.>"]
        assert config.retention == api.RetentionPolicy.LIMITS
        assert (config.max_age, config.duplicate_window) == (3600, 30)

    _run(url, scenario)


@pytest.mark.parametrize("topic", ["", "a b", "a.*", "a.>", "a..b", "_scorebus.dead"])
def test_a_topic_that_is_no_subject_is_a_config_error(tmp_path: Path, topic: str) -> None:
    with pytest.raises(ConfigError, match="topic"):
        NatsBroker(nats_url(tmp_path)).options.subject(topic)


def test_subscriptions_are_durable_explicit_ack_consumers(tmp_path: Path) -> None:
    async def scenario(broker: NatsBroker) -> None:
        js = (await broker._conn.client()).jetstream()
        stream, topic = broker.options.stream, "orders"
        first = await broker.subscription(topic, "app.first", ack_deadline_s=5)
        await broker.publish(topic, [Event.new("t")])
        second = await broker.subscription(topic, "app_first")  # "." and "_" do not merge

        one = (await js.consumer_info(stream, first.durable)).config
        two = (await js.consumer_info(stream, second.durable)).config
        assert first.durable != second.durable
        assert (one.ack_policy, one.ack_wait, one.max_deliver) == (api.AckPolicy.EXPLICIT, 5, -1)
        assert one.filter_subject == f"{broker.options.prefix}.orders"
        assert one.deliver_policy == api.DeliverPolicy.ALL
        assert (two.deliver_policy, two.opt_start_seq) == (api.DeliverPolicy.BY_START_SEQUENCE, 2)

        await broker.subscription(topic, "app.first", ack_deadline_s=2)
        assert (await js.consumer_info(stream, first.durable)).config.ack_wait == 2

    _run(nats_url(tmp_path), scenario)


def test_publish_drops_an_event_id_seen_on_the_topic_within_the_window(tmp_path: Path) -> None:
    async def scenario(broker: NatsBroker) -> None:
        sub = await broker.subscription("a", "sub-a")
        other = await broker.subscription("b", "sub-b")
        event = Event.new("t", {"n": 1})

        await broker.publish("a", [event])
        await broker.publish("a", [event, event])
        await broker.publish("b", [event])

        assert len(await _pull_n(sub, 2, timeout_s=0.3)) == 1
        assert len(await _pull_n(other, 1)) == 1

    _run(nats_url(tmp_path), scenario)


def test_replay_goes_only_to_the_subscription_that_gave_up(tmp_path: Path) -> None:
    async def scenario(broker: NatsBroker) -> None:
        failing = await broker.subscription("scores", "alerts")
        fine = await broker.subscription("scores", "audit")
        await broker.publish("scores", [Event.new("score", {"p": 0.9})])
        (d,) = await _pull_n(failing, 1)
        await fine.ack(await _pull_n(fine, 1))
        await failing.dead_letter([(d, "sink_unavailable", "down")])
        (letter,) = await broker.dead_letters()

        assert await broker.replay([letter.id]) == 1

        (back,) = await _pull_n(failing, 1)
        assert (back.event.id, back.attempt) == (d.event.id, 1)
        assert await fine.pull(10, 0.1) == []
        stats = {s.subscription: s for s in await broker.stats()}
        assert (stats["audit"].pending, stats["audit"].in_flight) == (0, 0)
        assert (stats["alerts"].in_flight, stats["alerts"].dead_lettered) == (1, 0)

    _run(nats_url(tmp_path), scenario)


def test_messages_from_producers_without_cloudevents_headers_are_delivered(
    tmp_path: Path,
) -> None:
    async def scenario(broker: NatsBroker) -> None:
        sub = await broker.subscription("raw", "raw-sub")
        js = (await broker._conn.client()).jetstream()
        subject = broker.options.subject("raw")
        structured = Event.new("order.created", {"amount": 3}, source="shop")
        await js.publish(subject, b'{"amount": 1}')
        await js.publish(subject, b'{"amount": 2}', headers={"Nats-Msg-Id": "producer-42"})
        await js.publish(subject, encode_structured(structured))

        plain, keyed, ce = await _pull_n(sub, 3)

        assert (plain.event.type, plain.event.data) == ("nats.message", b'{"amount": 1}')
        assert plain.event.id == f"{broker.options.stream}-1"
        assert plain.event.time == pytest.approx(time.time(), abs=5)
        assert keyed.event.id == "producer-42"
        assert (ce.event.id, ce.event.type, ce.event.source) == (
            structured.id,
            "order.created",
            "shop",
        )
        assert ce.event.data == b'{"amount":3}'

    _run(nats_url(tmp_path), scenario)


def test_stats_count_acked_apart_from_dead_letters_and_show_unclaimed_topics(
    tmp_path: Path,
) -> None:
    async def scenario(broker: NatsBroker) -> None:
        await broker.publish("early", [Event.new("t") for _ in range(3)])
        sub = await broker.subscription("work", "worker")
        await broker.publish("work", [Event.new("t") for _ in range(5)])
        got = await _pull_n(sub, 4)
        await sub.ack(got[:2])
        await sub.dead_letter([(got[2], "schema", "bad")])

        by_topic = {(s.subscription, s.topic): s for s in await broker.stats()}

        worker = by_topic["worker", "work"]
        assert (worker.pending, worker.in_flight, worker.acked, worker.dead_lettered) == (
            1,
            1,
            2,
            1,
        )
        assert by_topic["(unclaimed)", "early"].pending == 3
        assert not any(topic.startswith("_scorebus") for _, topic in by_topic)

    _run(nats_url(tmp_path), scenario)


def test_an_oversized_event_is_too_large(tmp_path: Path) -> None:
    async def scenario(broker: NatsBroker) -> None:
        with pytest.raises(TooLargeError, match="max_payload"):
            await broker.publish("big", [Event.new("t", b"x" * 1_100_000)])

    _run(nats_url(tmp_path), scenario)


def test_a_deleted_consumer_is_named_and_subscribing_again_recreates_it(tmp_path: Path) -> None:
    async def scenario(broker: NatsBroker) -> None:
        sub = await broker.subscription("tx", "scorer")
        js = (await broker._conn.client()).jetstream()
        await js.delete_consumer(broker.options.stream, sub.durable)

        with pytest.raises(BrokerUnavailable, match="'scorer' is gone"):
            await sub.pull(10, 0.1)

        again = await broker.subscription("tx", "scorer")
        await broker.publish("tx", [Event.new("t")])
        assert len(await _pull_n(again, 1)) == 1

    _run(nats_url(tmp_path, retry="1"), scenario)


class PrivateNats:
    """A nats-server of our own, to stop and restart: the shared one must stay up."""

    def __init__(self, binary: str, store: Path) -> None:
        self.binary, self.store = binary, store
        self.port = _free_port()
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> None:
        cmd = [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store), *args]
        self.procs.append(
            subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
        deadline = time.monotonic() + 10
        while not self._greets() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self._greets(), "private nats-server did not start"

    def _greets(self) -> bool:
        """The server accepts clients: it sends its INFO line (an open port is not enough)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                return s.recv(4).startswith(b"INFO")
        except OSError:
            return False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(sig)
            proc.wait()


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[PrivateNats]:
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not os.path.exists(binary):
        reason = "nats-server binary not found"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    server = PrivateNats(binary, tmp_path / "jetstream")
    yield server
    server.kill()


def test_a_server_without_jetstream_or_with_other_credentials_is_named(
    private_nats: PrivateNats, tmp_path: Path
) -> None:
    async def open_(url: str) -> None:
        async with NatsBroker(f"{url}?dlq={tmp_path}/dl.db"):
            pass

    private_nats.start()
    with pytest.raises(BrokerUnavailable, match=r"JetStream does not answer.*-js"):
        asyncio.run(open_(f"nats://127.0.0.1:{private_nats.port}"))
    private_nats.kill()
    private_nats.start("-js", "--user", "scorer", "--pass", "right")
    with pytest.raises(ConfigError, match=r"Authorization Violation.*USER:PASSWORD"):
        asyncio.run(open_(f"nats://scorer:wrong@127.0.0.1:{private_nats.port}"))
    asyncio.run(open_(f"nats://scorer:right@127.0.0.1:{private_nats.port}"))


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["restart", "crash"])
def test_a_server_restart_loses_nothing_and_an_outage_is_broker_unavailable(
    private_nats: PrivateNats, tmp_path: Path, stop: int
) -> None:
    private_nats.start("-js")
    server = f"127.0.0.1:{private_nats.port}"
    url = f"nats://{server}?retry=1&dlq={tmp_path}/dl.db"

    async def scenario() -> None:
        async with NatsBroker(url) as broker:
            sub = await broker.subscription("tx", "scorer", ack_deadline_s=30)
            events = [Event.new("t", {"n": i}) for i in range(3)]
            await broker.publish("tx", events)
            leased = await _pull_n(sub, 2)

            private_nats.kill(stop)
            started = time.monotonic()
            with pytest.raises(BrokerUnavailable, match=server):
                await sub.pull(10, 0.1)
            assert time.monotonic() - started < 3.0

            await asyncio.to_thread(private_nats.start, "-js")
            await sub.ack(leased)  # waits out the reconnect
            rest: list[Delivery] = []
            while batch := await _pull_n(sub, 3, timeout_s=0.5):
                await sub.ack(batch)
                rest += batch

            (stats,) = await broker.stats()
            assert (stats.pending, stats.in_flight) == (0, 0)
            if stop == signal.SIGTERM:
                # A clean shutdown keeps the consumer's leases: only the third comes.
                assert [d.event.id for d in rest] == [events[2].id]
                assert stats.acked == 3
            else:
                # A crash may lose the consumer's last state: leased ones come again.
                assert {d.event.id for d in leased + rest} == {e.id for e in events}
                assert events[2].id in {d.event.id for d in rest}

    asyncio.run(scenario())
