"""Redis-specific behaviour of the Redis Streams broker, against real servers.

The shared server on 6379 (a fresh key prefix per test, deleted afterwards) for
the key layout, takeover of a dead consumer's entries, dead letters, dedupe and
trimming; a private ``redis-server`` on a free port for what must not be done
to a shared one: restarting it mid-run and requiring a password.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import redis.asyncio as aioredis
from tests.contract.backend_redis import delete_prefix, redis_url

from scorebus.brokers import open_broker
from scorebus.brokers.redis import RedisBroker
from scorebus.errors import BrokerUnavailable, ConfigError
from scorebus.events import Event, encode_data


def _names() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return f"topic-{suffix}", f"sub-{suffix}"


def _events(n: int) -> list[Event]:
    return [Event.new("test.event", {"n": i}) for i in range(n)]


@asynccontextmanager
async def scratch(**options: str) -> AsyncIterator[tuple[str, Any]]:
    """A URL with a fresh prefix and a raw client on the shared server; keys deleted after."""
    url = redis_url(**options)
    raw = aioredis.Redis(port=urlsplit(url).port or 6379)
    try:
        yield url, raw
    finally:
        await delete_prefix(raw, _prefix(url))
        await raw.aclose()


def _prefix(url: str) -> str:
    return parse_qs(urlsplit(url).query)["prefix"][0]


# ------------------------------------------------------------------ key layout and interop


def test_events_are_cloudevents_fields_on_the_topic_stream() -> None:
    async def scenario() -> None:
        async with scratch() as (url, raw), open_broker(url) as broker:
            topic, name = _names()
            sub = await broker.subscription(topic, name)
            (event,) = _events(1)
            await broker.publish(topic, [event])

            ((_, fields),) = await raw.xrange(f"{_prefix(url)}:topic:{topic}")
            assert fields[b"ce-id"] == event.id.encode()
            assert fields[b"ce-type"] == b"test.event"
            assert fields[b"data"] == encode_data(event.data)

            # A producer that is not scorebus only has to write the same fields.
            await raw.xadd(
                f"{_prefix(url)}:topic:{topic}",
                {"ce-id": "ext-1", "ce-type": "order.created", "ce-source": "erp", "data": b"{}"},
            )
            got = await sub.pull(10, 1.0)
            assert [d.event.id for d in got] == [event.id, "ext-1"]
            assert got[1].event.source == "erp"

    asyncio.run(scenario())


def test_an_entry_that_is_not_a_cloudevent_is_dead_lettered_on_pull() -> None:
    async def scenario() -> None:
        async with scratch() as (url, raw), open_broker(url) as broker:
            topic, name = _names()
            sub = await broker.subscription(topic, name)
            entry = await raw.xadd(f"{_prefix(url)}:topic:{topic}", {"foo": "bar", "data": b"x"})
            await broker.publish(topic, _events(1))

            got = await sub.pull(10, 1.0)

            assert len(got) == 1
            (letter,) = await broker.dead_letters()
            assert letter.reason == "undecodable"
            assert "ce-id" in letter.error
            assert letter.event_id == f"redis:{entry.decode()}"
            assert (letter.payload, letter.attributes) == (b"x", {"foo": "bar"})
            await sub.ack(got)
            stats = (await broker.stats())[0]
            assert (stats.pending, stats.in_flight, stats.dead_lettered) == (0, 0, 1)

    asyncio.run(scenario())


# ------------------------------------------------------------------ leases and consumers


def test_a_dead_consumers_entries_are_taken_over_after_the_ack_deadline() -> None:
    async def scenario() -> None:
        async with scratch() as (url, raw):
            topic, name = _names()
            stream = f"{_prefix(url)}:topic:{topic}"
            dead = RedisBroker(url)
            sub_dead = await dead.subscription(topic, name, ack_deadline_s=0.3)
            await dead.publish(topic, _events(3))
            assert len(await sub_dead.pull(10, 1.0)) == 3
            # The worker dies: it never acks, and it never comes back.
            await dead.close()

            async with RedisBroker(url) as alive:
                sub = await alive.subscription(topic, name, ack_deadline_s=0.3)
                assert await sub.pull(10, 0.05) == []
                await asyncio.sleep(0.35)
                got = await sub.pull(10, 1.0)
                assert [d.attempt for d in got] == [2, 2, 2]
                await sub.ack(got)
                consumers = {c["name"].decode(): c for c in await raw.xinfo_consumers(stream, name)}
                assert consumers[dead.consumer]["pending"] == 0
                assert consumers[alive.consumer]["pending"] == 0
            # Closing leaves the group when nothing is pending there.
            left = {c["name"].decode() for c in await raw.xinfo_consumers(stream, name)}
            assert alive.consumer not in left

    asyncio.run(scenario())


def test_a_due_nack_is_redelivered_to_any_consumer_of_the_group() -> None:
    async def scenario() -> None:
        async with scratch() as (url, raw), RedisBroker(url) as one, RedisBroker(url) as two:
            topic, name = _names()
            sub_one = await one.subscription(topic, name)
            sub_two = await two.subscription(topic, name)
            await one.publish(topic, _events(1))
            (d,) = await sub_one.pull(1, 1.0)

            await d.nack(0.3)

            assert await raw.zcard(f"{_prefix(url)}:lease:{name}") == 1
            assert await sub_two.pull(1, 0.1) == []
            (again,) = await sub_two.pull(1, 1.0)
            assert (again.event.id, again.attempt) == (d.event.id, 2)
            await again.ack()
            assert await raw.zcard(f"{_prefix(url)}:lease:{name}") == 0

    asyncio.run(scenario())


def test_a_vanished_group_is_recreated_and_consumption_goes_on() -> None:
    async def scenario() -> None:
        async with scratch() as (url, raw), open_broker(url) as broker:
            topic, name = _names()
            sub = await broker.subscription(topic, name)
            await raw.delete(
                f"{_prefix(url)}:topic:{topic}"
            )  # as a restart without persistence would

            assert await sub.pull(10, 0.05) == []
            await broker.publish(topic, _events(2))
            assert len(await sub.pull(10, 1.0)) == 2

    asyncio.run(scenario())


# ------------------------------------------------------------------ dead letters and replay


def test_dead_letters_are_a_stream_and_replay_reaches_only_their_subscription() -> None:
    async def scenario() -> None:
        async with scratch() as (url, raw), open_broker(url) as broker:
            topic, name = _names()
            one = await broker.subscription(topic, f"{name}-one")
            two = await broker.subscription(topic, f"{name}-two")
            (event,) = _events(1)
            await broker.publish(topic, [event])
            await two.ack(await two.pull(1, 1.0))
            (d,) = await one.pull(1, 1.0)
            await one.dead_letter([(d, "schema", "$.amount: expected float")])

            ((entry_id, fields),) = await raw.xrange(f"{_prefix(url)}:dlq:{name}-one")
            (letter,) = await broker.dead_letters()
            assert entry_id == f"{letter.id}-0".encode()
            assert fields[b"dl-reason"] == b"schema"
            assert fields[b"dl-attempts"] == b"1"
            assert fields[b"data"] == encode_data(event.data)

            assert await broker.replay([letter.id, letter.id + 1000]) == 1
            (back,) = await one.pull(1, 1.0)
            assert (back.event.id, back.attempt) == (event.id, 1)
            assert await two.pull(10, 0.1) == []
            await back.ack()
            # The replay copy lives in the subscription's own stream and goes on ack.
            assert await raw.xlen(f"{_prefix(url)}:replay:{name}-one") == 0

    asyncio.run(scenario())


# ------------------------------------------------------------------ publish options, trimming


def test_publish_dedupes_an_event_id_unless_turned_off() -> None:
    async def scenario() -> None:
        for dedupe, expected in (("120", 1), ("0", 2)):
            async with scratch(dedupe=dedupe) as (url, _), open_broker(url) as broker:
                topic, name = _names()
                sub = await broker.subscription(topic, name)
                (event,) = _events(1)
                await broker.publish(topic, [event])
                await broker.publish(topic, [event])
                assert len(await sub.pull(10, 0.2)) == expected, dedupe

    asyncio.run(scenario())


def test_entries_every_group_acked_are_trimmed_and_stats_stay_right() -> None:
    async def scenario() -> None:
        for trim, left in (("1", 6), ("0", 10)):
            async with scratch(trim=trim) as (url, raw):
                topic, name = _names()
                async with RedisBroker(url) as broker:
                    fast = await broker.subscription(topic, f"{name}-fast")
                    slow = await broker.subscription(topic, f"{name}-slow")
                    await broker.publish(topic, _events(10))
                    await fast.ack(await fast.pull(10, 1.0))
                    await slow.ack((await slow.pull(10, 1.0))[:4])
                    assert await fast.tidy() == 10 - left

                    assert await raw.xlen(f"{_prefix(url)}:topic:{topic}") == left
                    by_name = {s.subscription: s for s in await broker.stats()}
                    assert (by_name[f"{name}-slow"].in_flight, by_name[f"{name}-slow"].acked) == (
                        6,
                        4,
                    )
                    await broker.publish(topic, _events(1))
                    assert [s.pending for s in await broker.stats()] == [1, 1]

    asyncio.run(scenario())


def test_stats_show_a_topic_with_no_subscription_yet() -> None:
    async def scenario() -> None:
        async with scratch() as (url, _), open_broker(url) as broker:
            topic, name = _names()
            await broker.publish(topic, _events(3))
            (row,) = await broker.stats()
            assert (row.subscription, row.topic, row.pending) == ("(unclaimed)", topic, 3)
            await broker.subscription(topic, name)
            (row,) = await broker.stats()
            assert (row.subscription, row.pending) == (name, 3)

    asyncio.run(scenario())


# ------------------------------------------------------------------ URL and connection errors


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("redis://localhost/0?group=x", r"unknown option 'group'.*valid options are dedupe"),
        ("redis://localhost/zero", "database number"),
        ("redis://localhost:port/0", "port is not a number"),
        ("redis://localhost/0?dedupe=-1", "dedupe='-1' must be a number >= 0"),
        ("redis://localhost/0?tls=maybe", "tls='maybe' must be 1 or 0"),
        ("redis:///0", "expected redis://"),
    ],
)
def test_a_bad_url_is_a_config_error(url: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RedisBroker(url)


def test_nothing_listening_fails_at_once_naming_the_server() -> None:
    port = _free_port()

    async def scenario() -> None:
        async with RedisBroker(f"redis://127.0.0.1:{port}/3?retry=30") as broker:
            started = time.monotonic()
            with pytest.raises(
                BrokerUnavailable, match=rf"redis://127.0.0.1:{port}/3.*redis-server is running"
            ):
                await broker.subscription("topic", "sub")
            assert time.monotonic() - started < 2.0

    asyncio.run(scenario())


class PrivateRedis:
    """A ``redis-server`` of our own on a free port, to stop and start at will."""

    def __init__(self, folder: Path, *args: str) -> None:
        self.port = _free_port()
        self.folder = folder
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--dir", str(self.folder), *self.args],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise AssertionError(f"private redis-server on {self.port} did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


def _require_redis_server() -> None:
    if shutil.which("redis-server") is None:
        reason = "redis-server is not installed"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: a missing server is a failure)")
        pytest.skip(reason)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    _require_redis_server()
    server = PrivateRedis(tmp_path, "--appendonly", "yes", "--appendfsync", "always")
    server.start()
    yield server
    server.stop()


def test_a_redis_restart_mid_run_is_survived_and_nothing_acked_comes_back(
    private_redis: PrivateRedis,
) -> None:
    url = f"redis://127.0.0.1:{private_redis.port}/0?retry=10"

    async def scenario() -> None:
        topic, name = _names()
        async with RedisBroker(url) as broker:
            sub = await broker.subscription(topic, name)
            events = _events(5)
            await broker.publish(topic, events)
            await sub.ack(await sub.pull(2, 1.0))

            private_redis.stop()
            waiting = asyncio.create_task(sub.pull(10, 1.0))
            await asyncio.sleep(0.3)
            assert not waiting.done()
            await asyncio.to_thread(private_redis.start)
            got = await asyncio.wait_for(waiting, 10)

            assert [d.event.id for d in got] == [e.id for e in events[2:]]
            await sub.ack(got)
            (stats,) = await broker.stats()
            assert (stats.pending, stats.in_flight, stats.acked) == (0, 0, 5)

    asyncio.run(scenario())


def test_redis_gone_for_longer_than_the_retry_window_is_broker_unavailable(
    private_redis: PrivateRedis,
) -> None:
    url = f"redis://127.0.0.1:{private_redis.port}/0?retry=0.5"

    async def scenario() -> None:
        async with RedisBroker(url) as broker:
            sub = await broker.subscription("topic", "sub")
            private_redis.stop()
            started = time.monotonic()
            with pytest.raises(
                BrokerUnavailable, match=r"lost Redis at redis://127.0.0.1:\d+/0 during pull"
            ):
                await sub.pull(10, 0.1)
            assert 0.4 < time.monotonic() - started < 3.0

    asyncio.run(scenario())


def test_wrong_credentials_are_a_config_error(tmp_path: Path) -> None:
    _require_redis_server()
    server = PrivateRedis(tmp_path, "--requirepass", "s3cret")
    server.start()

    async def scenario() -> None:
        for auth in ("", ":wrong@"):
            async with RedisBroker(f"redis://{auth}127.0.0.1:{server.port}/0") as broker:
                with pytest.raises(ConfigError, match="user and password") as info:
                    await broker.subscription("topic", "sub")
                assert "wrong" not in str(info.value)
        async with RedisBroker(f"redis://:s3cret@127.0.0.1:{server.port}/0") as broker:
            await broker.subscription("topic", "sub")

    try:
        asyncio.run(scenario())
    finally:
        server.stop()
