"""The MQTT broker against a real Mosquitto: what the contract suite does not pin.

Devices publishing bare JSON with plain MQTT clients, MQTT 3.1.1, connection
errors, events that Mosquitto would drop (no live member) parked instead, a
killed worker's session drained by a live member, competing members, and a
Mosquitto restart in the middle of a run (a private Mosquitto on a free port).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from tests.contract.backend_mqtt import mqtt_url
from tests.servers import require_server

from scorebus.brokers import Delivery, open_broker
from scorebus.brokers.mqtt import MqttBroker, MqttSubscription
from scorebus.errors import BrokerUnavailable, ConfigError
from scorebus.events import Event, encode_data


def _events(n: int, **ext: str) -> list[Event]:
    return [Event.new("test.event", {"n": i}, extensions=dict(ext)) for i in range(n)]


async def _pull_n(sub: MqttSubscription, n: int, timeout_s: float = 5.0) -> list[Delivery]:
    got: list[Delivery] = []
    give_up = time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < give_up:
        got += await sub.pull(n - len(got), 0.05)
    return got


def _run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


@asynccontextmanager
async def _broker(url: str) -> AsyncIterator[MqttBroker]:
    """A broker whose prefix is purged at the end (sessions, register, parked events)."""
    async with MqttBroker(url) as broker:
        try:
            yield broker
        finally:
            await broker.purge()


async def _device_publish(
    port: int,
    topic: str,
    payloads: list[bytes],
    *,
    ids: list[str | None] | None = None,
    v5: bool = True,
) -> None:
    """A device: a plain MQTT client publishing bare JSON at QoS 1, no CloudEvents attributes."""
    protocol = aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311
    async with aiomqtt.Client("127.0.0.1", port, protocol=protocol) as client:
        for payload, msg_id in zip(payloads, ids or [None] * len(payloads), strict=True):
            props = None
            if msg_id is not None:
                props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                props.UserProperty = [("id", msg_id)]
            await client.publish(topic, payload, qos=1, properties=props)


# ---------------------------------------------------------------- devices


def test_bare_device_payloads_get_ids_that_survive_redelivery(tmp_path: Path) -> None:
    port = require_server("mosquitto")
    url = mqtt_url(tmp_path)
    prefix = url.split("prefix=")[1].split("&")[0]
    reading = b'{"device": "d1", "celsius": 21.5}'

    async def scenario() -> None:
        async with MqttBroker(url) as broker:
            sub = await broker.subscription("sensors/+", "telemetry", ack_deadline_s=0.3)
            await _device_publish(
                port,
                f"{prefix}/sensors/d1",
                [reading, reading, reading],
                ids=[None, None, "reading-7"],
            )
            await _device_publish(port, f"{prefix}/sensors/d2", [reading])

            got = await _pull_n(sub, 4)
            ids = [d.event.id for d in got]
            assert len(got) == 4
            # Same topic and payload, no id property: the same event (the sink keeps one).
            assert ids[0] == ids[1]
            # The publisher's id property, or another topic, makes another event.
            assert len({ids[0], ids[2], ids[3]}) == 3
            assert all(i.startswith("mqtt-") for i in ids)
            assert [d.event.subject for d in got] == ["sensors/d1"] * 3 + ["sensors/d2"]
            assert {d.event.type for d in got} == {"mqtt.message"}
            assert all(d.event.data == reading for d in got)

            # A nacked copy and a lease that ran out keep the id.
            await got[0].nack()
            await asyncio.sleep(0.35)
            again = await _pull_n(sub, 4)
            assert sorted(d.event.id for d in again) == sorted(ids)
            assert {d.attempt for d in again} == {2}
            await sub.ack([d for d in again if d.event.id != ids[3]])

        # Left unacked by a worker that stopped: the next member gets it, same id.
        async with _broker(url) as broker:
            sub = await broker.subscription("sensors/+", "telemetry")
            (back,) = await _pull_n(sub, 1)
            assert back.event.id == ids[3]
            assert back.attempt == 3
            await back.ack()
            assert await sub.pull(10, 0.1) == []

    _run(scenario)


def test_protocol_3_1_1_carries_whole_events_as_json(tmp_path: Path) -> None:
    port = require_server("mosquitto")
    url = mqtt_url(tmp_path, protocol="3.1.1")
    prefix = url.split("prefix=")[1].split("&")[0]

    async def scenario() -> None:
        async with _broker(url) as broker:
            sub = await broker.subscription("orders", "scoring")
            cause = Event.new("order.created")
            good = Event.new("order.placed", {"amount": 12.5}, subject="o-1", caused_by=cause)
            raw = Event.new("order.placed", b"\x00not json", extensions={"tenant": "acme"})
            await broker.publish("orders", [good, raw])
            await _device_publish(port, f"{prefix}/orders", [b'{"amount": 3}'], v5=False)

            first, second, device = await _pull_n(sub, 3)
            assert (first.event.id, first.event.subject) == (good.id, "o-1")
            assert first.event.causation_id == cause.id
            assert first.event.data == encode_data({"amount": 12.5})
            assert first.event.time == pytest.approx(good.time)
            assert (second.event.data, second.event.extensions) == (raw.data, {"tenant": "acme"})
            assert device.event.id.startswith("mqtt-") and device.event.data == b'{"amount": 3}'

            await sub.nack([first])
            (again,) = await _pull_n(sub, 1)
            assert (again.event.id, again.attempt) == (good.id, 2)
            assert again.event.extensions == first.event.extensions
            await sub.ack([again, second, device])
            assert (await broker.stats())[0].pending == 0

    _run(scenario)


# ---------------------------------------------------------------- configuration


def test_a_refused_connection_is_one_line_naming_the_url() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes

    async def scenario() -> None:
        with pytest.raises(BrokerUnavailable) as caught:
            async with open_broker(f"mqtt://127.0.0.1:{port}?timeout=2"):
                pass
        message = str(caught.value)
        assert f"mqtt://127.0.0.1:{port}" in message
        assert "is Mosquitto running" in message
        assert "\n" not in message

    _run(scenario)


def test_bad_urls_and_names_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown option 'group'.*valid options are"):
        MqttBroker("mqtt://127.0.0.1?group=x")
    with pytest.raises(ConfigError, match=r"protocol must be 5 or 3\.1\.1"):
        MqttBroker("mqtt://127.0.0.1?protocol=4")
    with pytest.raises(ConfigError, match="inflight must be a number"):
        MqttBroker("mqtt://127.0.0.1?inflight=0")

    async def scenario() -> None:
        async with _broker(mqtt_url(tmp_path)) as broker:
            with pytest.raises(ConfigError, match="topic to publish to"):
                await broker.publish("sensors/+", _events(1))
            with pytest.raises(ConfigError, match="subscription name"):
                await broker.subscription("orders", "a/b")
            with pytest.raises(ConfigError, match="subscription filter"):
                await broker.subscription("#", "everything")

    _run(scenario)


# ---------------------------------------------------------------- where Mosquitto would drop


def test_events_for_a_subscription_without_a_live_member_are_parked_not_dropped(
    tmp_path: Path,
) -> None:
    # Mosquitto keeps at most max_queued_messages (1000 by default) for an offline
    # session and drops the rest; scorebus parks them on the host instead.
    url = mqtt_url(tmp_path)
    events = _events(1500)

    async def scenario() -> None:
        async with _broker(url) as broker:
            async with MqttBroker(url) as first:
                await first.subscription("readings", "archive")
            await broker.publish("readings", events)
            await broker.publish("nobody-listens", _events(2))
            stats = {s.subscription: (s.topic, s.pending) for s in await broker.stats()}
            assert stats == {"archive": ("readings", 1500), "(unclaimed)": ("nobody-listens", 2)}

            sub = await broker.subscription("readings", "archive")
            got = await _pull_n(sub, 1500)
            assert [d.event.id for d in got] == [e.id for e in events]
            await sub.ack(got)
            assert await sub.pull(10, 0.1) == []

    _run(scenario)


def test_a_backlog_held_by_the_last_member_survives_its_close(tmp_path: Path) -> None:
    # The last member to stop stays subscribed as the anchor. A backlog it left
    # unacked at Mosquitto floods its client id when a new member connects as it
    # to drain it (the unsubscribe times out behind 20,000 resends, and Mosquitto
    # drops past its queue limits), so the anchor parks what it holds on the host.
    url = mqtt_url(tmp_path)
    pad = "x" * 200  # transaction-sized payloads
    events = [Event.new("t", {"n": i, "pad": pad}) for i in range(20_000)]

    async def scenario() -> None:
        async with MqttBroker(url) as first:
            await first.subscription("transactions", "fraud")
            for start in range(0, len(events), 5000):
                await first.publish("transactions", events[start : start + 5000])
            assert [s.pending for s in await first.stats()] == [20_000]
        async with _broker(url) as second:
            sub = await second.subscription("transactions", "fraud")
            got: list[Delivery] = []
            give_up = time.monotonic() + 10
            while len(got) < len(events) and time.monotonic() < give_up:
                batch = await sub.pull(5000, 0.2)
                await sub.ack(batch)
                got += batch
            assert len(got) == len(events)
            assert {d.event.id for d in got} == {e.id for e in events}

    _run(scenario)


_WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from scorebus.brokers.mqtt import MqttBroker

    async def main():
        broker = MqttBroker(sys.argv[1])
        await broker.__aenter__()
        sub = await broker.subscription("jobs", "crunch")
        print("joined", flush=True)
        got = []
        while len(got) < int(sys.argv[2]):
            got += await sub.pull(100, 0.1)
        print("leased", len(got), flush=True)
        await asyncio.sleep(60)

    asyncio.run(main())
    """
)


def test_a_killed_worker_session_is_drained_by_a_live_member(tmp_path: Path) -> None:
    url = mqtt_url(tmp_path)
    events = _events(40)

    async def scenario() -> None:
        async with _broker(url) as broker:
            sub = await broker.subscription("jobs", "crunch")
            worker = subprocess.Popen(
                [sys.executable, "-c", _WORKER, url, "20"],
                stdout=subprocess.PIPE,
                cwd=tmp_path,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            )
            try:
                assert worker.stdout is not None
                line = await asyncio.to_thread(worker.stdout.readline)
                assert line.startswith(b"joined")
                await asyncio.sleep(0.2)  # its live marker reaches our view
                await broker.publish("jobs", events)  # Mosquitto alternates: 20 each
                mine = await _pull_n(sub, 20)
                line = await asyncio.to_thread(worker.stdout.readline)
                assert line.split() == [b"leased", b"20"]
                worker.send_signal(signal.SIGKILL)
                worker.wait()
            finally:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
                if worker.stdout is not None:
                    worker.stdout.close()

            theirs = await _pull_n(sub, 20)
            assert {d.event.id for d in mine + theirs} == {e.id for e in events}
            assert {d.attempt for d in mine} == {1}
            # The dead worker's leases were counted on this host: these are second attempts.
            assert {d.attempt for d in theirs} == {2}
            await sub.ack(mine + theirs)
            assert (await broker.stats())[0].pending == 0

    _run(scenario)


def test_competing_members_share_new_messages(tmp_path: Path) -> None:
    url = mqtt_url(tmp_path)
    events = _events(200)

    async def scenario() -> None:
        async with _broker(url) as a, MqttBroker(url) as b:
            sub_a = await a.subscription("work", "crew")
            sub_b = await b.subscription("work", "crew")
            await asyncio.sleep(0.1)
            await a.publish("work", events)

            async def consume(sub: MqttSubscription) -> list[str]:
                seen: list[str] = []
                empty = 0
                while empty < 5:
                    got = await sub.pull(16, 0.05)
                    empty = 0 if got else empty + 1
                    seen += [d.event.id for d in got]
                    await sub.ack(got)
                return seen

            seen_a, seen_b = await asyncio.gather(consume(sub_a), consume(sub_b))
            assert set(seen_a).isdisjoint(seen_b)
            assert set(seen_a) | set(seen_b) == {e.id for e in events}
            assert seen_a and seen_b

    _run(scenario)


# ---------------------------------------------------------------- Mosquitto restarts


class _Mosquitto:
    """A private Mosquitto on a free port, with persistence, that a test may restart."""

    def __init__(self, folder: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.conf = folder / "mosquitto.conf"
        folder.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {folder}/\nuser {os.environ.get('USER') or 'root'}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError("the private Mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # saves its persistence file
            self.proc.wait(10)


@pytest.fixture
def private_mosquitto(tmp_path: Path) -> Iterator[_Mosquitto]:
    require_server("mosquitto")  # the binary is there
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        pytest.skip("no mosquitto binary to start a private broker")
    server = _Mosquitto(tmp_path / "mosquitto")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_mosquitto_restart_loses_nothing_unacked(
    private_mosquitto: _Mosquitto, tmp_path: Path
) -> None:
    url = (
        f"mqtt://127.0.0.1:{private_mosquitto.port}?prefix=sbtest-{uuid.uuid4().hex[:8]}"
        f"&state={tmp_path}/state&retry=20"
    )
    events = _events(6)

    async def scenario() -> None:
        async with MqttBroker(url) as broker:
            sub = await broker.subscription("tx", "fraud")
            await broker.publish("tx", events[:4])
            first = await _pull_n(sub, 4)
            await sub.ack(first[:1])
            await sub.local_stats()  # a round trip: Mosquitto has taken the ack in

            private_mosquitto.stop()
            later = asyncio.create_task(broker.publish("tx", events[4:]))  # waits for it
            await asyncio.sleep(0.3)
            assert not later.done()
            await sub.ack(first[1:2])  # acked on a dead connection: redelivered, not lost
            private_mosquitto.start()
            await asyncio.wait_for(later, 15)

            got = await _pull_n(sub, 5, timeout_s=10)
            assert sorted(d.event.id for d in got) == sorted(e.id for e in events[1:])
            assert {d.attempt for d in got[:3]} == {2}
            await sub.ack(got)
            assert await sub.pull(10, 0.2) == []
            (stats,) = await broker.stats()
            assert (stats.pending, stats.in_flight) == (0, 0)

    _run(scenario)
