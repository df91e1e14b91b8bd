"""Pub/Sub specifics, against the real emulator: what the shared contract cannot see.

Each test works in its own emulator project; what Pub/Sub itself did is checked
with Google's own client (``raw``), not through scorebus.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.pubsub_v1 import PublisherClient, SubscriberClient
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport
from google.pubsub_v1.types import PubsubMessage
from tests.pubsub_emulator import pubsub_emulator, scratch_project

from scorebus.brokers.pubsub import PubSubBroker
from scorebus.brokers.pubsub.admin import SubscriptionSettings
from scorebus.brokers.pubsub.binding import PLAIN_TYPE
from scorebus.errors import BrokerUnavailable, ConfigError, TooLargeError
from scorebus.events import Event, encode_data, encode_structured

__all__ = ["pubsub_emulator"]


class Raw:
    """Google's client on the same emulator project: the independent observer."""

    def __init__(self, host: str, project: str) -> None:
        self.channel = grpc.insecure_channel(host)
        self.pub = PublisherClient(transport=PublisherGrpcTransport(channel=self.channel))
        self.sub = SubscriberClient(transport=SubscriberGrpcTransport(channel=self.channel))
        self.project = project

    def topic(self, name: str) -> str:
        return f"projects/{self.project}/topics/{name}"

    def subscription(self, name: str) -> str:
        return f"projects/{self.project}/subscriptions/{name}"

    def pull(self, name: str, n: int, timeout_s: float = 5.0) -> list[Any]:
        got: list[Any] = []
        give_up = time.monotonic() + timeout_s
        while len(got) < n and time.monotonic() < give_up:
            r = self.sub.pull(subscription=self.subscription(name), max_messages=n, timeout=2)
            got += r.received_messages
        if got:
            self.sub.acknowledge(
                subscription=self.subscription(name), ack_ids=[m.ack_id for m in got]
            )
        return got


@pytest.fixture
def env(pubsub_emulator: str, tmp_path: Path) -> Iterator[tuple[str, Raw]]:
    project = scratch_project(pubsub_emulator)
    base = f"pubsub://{project}?emulator={pubsub_emulator}&dlq={tmp_path}/dlq.db"
    raw = Raw(pubsub_emulator, project)
    yield base, raw
    raw.channel.close()


def _names() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return f"topic-{suffix}", f"sub-{suffix}"


async def _pull_n(sub: Any, n: int, timeout_s: float = 5.0) -> list[Any]:
    got: list[Any] = []
    give_up = time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < give_up:
        got += await sub.pull(n - len(got), 0.1)
    return got


def test_ordering_key_is_the_subject_only_when_asked(env: tuple[str, Raw]) -> None:
    base, raw = env
    topic, name = _names()

    async def scenario() -> None:
        async with PubSubBroker(base + "&ordering=subject") as ordered, PubSubBroker(base) as plain:
            await ordered.subscription(topic, name)
            raw.sub.create_subscription(name=raw.subscription("observer"), topic=raw.topic(topic))
            events = [Event.new("t", {"n": 1}, subject="card-1"), Event.new("t", {"n": 2})]
            await ordered.publish(topic, events)
            await plain.publish(topic, [Event.new("t", {"n": 3}, subject="card-2")])

            got = raw.pull("observer", 3)
            assert [m.message.ordering_key for m in got] == ["card-1", "", ""]
            info = await ordered.admin.subscription(name)
            assert info is not None and info.ordering

    asyncio.run(scenario())


def test_attributes_follow_the_cloudevents_pubsub_binding(env: tuple[str, Raw]) -> None:
    base, raw = env
    topic, name = _names()

    async def scenario() -> None:
        async with PubSubBroker(base) as broker:
            sub = await broker.subscription(topic, name)
            raw.sub.create_subscription(name=raw.subscription("observer"), topic=raw.topic(topic))
            event = Event.new("order.scored", {"p": 0.5}, subject="o-7", extensions={"tenant": "a"})
            await broker.publish(topic, [event])
            (seen,) = raw.pull("observer", 1)
            attrs = dict(seen.message.attributes)
            assert seen.message.data == encode_data({"p": 0.5})
            assert {k: attrs[k] for k in ("ce-id", "ce-type", "ce-subject", "ce-tenant")} == {
                "ce-id": event.id,
                "ce-type": "order.scored",
                "ce-subject": "o-7",
                "ce-tenant": "a",
            }
            assert attrs["ce-specversion"] == "1.0"
            assert attrs["content-type"] == "application/json"
            (mine,) = await _pull_n(sub, 1)
            await mine.ack()

            # What other publishers send: binary mode, structured mode, a plain message.
            binary = Event.new("from.binary", {"b": 1}, source="other")
            structured = Event.new("from.structured", {"s": 2}, extensions={"region": "eu"})
            attrs = {
                "ce-id": binary.id,
                "ce-type": binary.type,
                "ce-source": "other",
                "ce-specversion": "1.0",
                "Content-Type": "application/json",
            }
            raw.pub.publish(
                topic=raw.topic(topic),
                messages=[
                    PubsubMessage(data=b'{"b": 1}', attributes=attrs),
                    PubsubMessage(
                        data=encode_structured(structured),
                        attributes={"content-type": "application/cloudevents+json"},
                    ),
                    PubsubMessage(data=b"raw bytes", attributes={"bucketId": "b1"}),
                    PubsubMessage(
                        data=b"{not json",
                        attributes={"content-type": "application/cloudevents+json"},
                    ),
                ],
            )
            got = await _pull_n(sub, 3)
            assert [(d.event.id, d.event.type, d.event.data) for d in got[:2]] == [
                (binary.id, "from.binary", b'{"b": 1}'),
                (structured.id, "from.structured", b'{"s":2}'),
            ]
            assert got[1].event.extensions == {"region": "eu"}
            plain = got[2].event
            assert (plain.type, plain.data, plain.extensions) == (
                PLAIN_TYPE,
                b"raw bytes",
                {"bucketid": "b1"},
            )
            assert plain.source == f"//pubsub.googleapis.com/{raw.topic(topic)}"
            # The undecodable one never reaches the caller: it is dead-lettered at once.
            assert await _pull_n(sub, 1, timeout_s=1.0) == []
            (letter,) = await broker.dead_letters(subscription=name)
            assert (letter.reason, letter.payload) == ("undecodable", b"{not json")

    asyncio.run(scenario())


def test_pubsub_dead_letter_policy_counts_attempts_across_processes(env: tuple[str, Raw]) -> None:
    base, raw = env
    topic, name = _names()

    async def scenario() -> None:
        url = base + "&max_delivery_attempts=5"
        async with PubSubBroker(url) as one, PubSubBroker(url) as two:
            subs = [await one.subscription(topic, name), await two.subscription(topic, name)]
            (event,) = [Event.new("t", {"x": 1})]
            await one.publish(topic, [event])
            attempts = []
            for i in range(5):
                # Alternate between two brokers: an in-process count would restart at 1.
                (d,) = await _pull_n(subs[i % 2], 1)
                attempts.append(d.attempt)
                await d.nack()
            assert attempts == [1, 2, 3, 4, 5]
            # Pub/Sub itself forwards it to the dead-letter topic's subscription
            # (the emulator does so when the sixth delivery would happen).
            assert await subs[0].pull(10, 1.0) == []
            (letter,) = raw.pull(f"{name}.dead-letter", 1)
            attrs = letter.message.attributes
            assert (attrs["ce-id"], attrs["CloudPubSubDeadLetterSourceDeliveryCount"]) == (
                event.id,
                "5",
            )

    asyncio.run(scenario())


def test_a_dead_letter_is_published_and_replayed_to_its_own_subscription(
    env: tuple[str, Raw],
) -> None:
    base, raw = env
    topic, name = _names()

    async def scenario() -> None:
        async with PubSubBroker(base) as broker:
            sub = await broker.subscription(topic, name)
            other = await broker.subscription(topic, f"{name}-other")
            (event,) = [Event.new("t", {"x": 1}, subject="s1")]
            await broker.publish(topic, [event])
            (d,) = await _pull_n(sub, 1)
            (o,) = await _pull_n(other, 1)
            await o.ack()
            await sub.dead_letter([(d, "schema", "$.x: expected str")])

            (published,) = raw.pull(f"{name}.dead-letter", 1)
            attrs = published.message.attributes
            assert (attrs["ce-id"], attrs["scorebus-reason"], attrs["scorebus-attempts"]) == (
                event.id,
                "schema",
                "1",
            )
            assert attrs["scorebus-error"] == "$.x: expected str"
            (letter,) = await broker.dead_letters()
            assert await broker.replay([letter.id]) == 1

            (back,) = await _pull_n(sub, 1)
            assert (back.event.id, back.event.subject, back.attempt) == (event.id, "s1", 1)
            assert back.event.time == pytest.approx(event.time)
            assert await other.pull(10, 0.5) == []  # the replay is not for it

    asyncio.run(scenario())


def test_publisher_batching_settings_are_used(env: tuple[str, Raw]) -> None:
    base, _ = env
    topic, name = _names()

    async def scenario() -> None:
        url = base + "&publish_max_messages=3&publish_max_bytes=4096"
        async with PubSubBroker(url) as broker:
            sub = await broker.subscription(topic, name)
            small = [Event.new("t", {"n": i}) for i in range(7)]
            await broker.publish(topic, small)
            assert broker.publish_requests == 3  # 3 + 3 + 1 messages
            big = [Event.new("t", {"pad": "x" * 1500, "n": i}) for i in range(4)]
            await broker.publish(topic, big)
            assert broker.publish_requests == 5  # two ~1.8 kB messages per 4 kB request
            got = await _pull_n(sub, 11)
            assert [d.event.id for d in got] == [e.id for e in small + big]

            with pytest.raises(TooLargeError, match="10 MB"):
                await broker.publish(topic, [Event.new("t", b"x" * 10_000_001)])
            assert broker.publish_requests == 5

    asyncio.run(scenario())


def test_extending_leases_while_a_batch_is_scored_keeps_it_from_other_workers(
    env: tuple[str, Raw],
) -> None:
    base, _ = env
    topic, name = _names()

    async def scenario() -> None:
        async with PubSubBroker(base) as worker, PubSubBroker(base) as rival:
            mine = await worker.subscription(topic, name, ack_deadline_s=1)
            theirs = await rival.subscription(topic, name, ack_deadline_s=1)
            await worker.publish(topic, [Event.new("t", {"n": i}) for i in range(20)])
            batch = await _pull_n(mine, 20)

            async def keep_alive() -> None:
                while True:
                    await asyncio.sleep(0.4)
                    await mine.extend(batch, 1.0)

            extender = asyncio.create_task(keep_alive())
            stolen = await _pull_n(theirs, 1, timeout_s=2.5)  # "scoring" takes 2.5 s
            extender.cancel()
            assert stolen == []
            await mine.ack(batch)
            assert await _pull_n(theirs, 1, timeout_s=1.5) == []

            # Without extension the 1 s lease runs out and the rival gets the message.
            await worker.publish(topic, [Event.new("t", {"n": 99})])
            (late,) = await _pull_n(mine, 1)
            (taken,) = await _pull_n(theirs, 1, timeout_s=3.0)
            assert (taken.event.id, taken.attempt) == (late.event.id, 2)
            await taken.ack()

    asyncio.run(scenario())


def test_a_dead_worker_releases_its_leases_after_the_requested_deadline(
    env: tuple[str, Raw],
) -> None:
    base, _ = env
    topic, name = _names()

    async def scenario() -> None:
        async with PubSubBroker(base) as survivor:
            sub = await survivor.subscription(topic, name, ack_deadline_s=2)
            crashed = PubSubBroker(base)
            doomed = await crashed.subscription(topic, name, ack_deadline_s=2)
            await survivor.publish(topic, [Event.new("t", {"n": 1})])
            (held,) = await _pull_n(doomed, 1)
            crashed._rpc.close()  # gone without settling, like a SIGKILL

            started = time.monotonic()
            (again,) = await _pull_n(sub, 1, timeout_s=8.0)
            # Pub/Sub's subscription minimum is 10 s; the 2 s lease was applied per pull.
            assert time.monotonic() - started < 5.0
            assert (again.event.id, again.attempt) == (held.event.id, 2)
            await again.ack()
            with contextlib.suppress(Exception):
                await crashed.close()

    asyncio.run(scenario())


def test_unclaimed_messages_wait_on_a_holding_subscription(env: tuple[str, Raw]) -> None:
    base, _ = env
    topic, name = _names()

    async def scenario() -> None:
        async with PubSubBroker(base) as broker:
            early = [Event.new("t", {"n": i}) for i in range(3)]
            await broker.publish(topic, early)
            assert await broker.admin.topic_subscriptions(topic) == [f"{topic}.scorebus-unclaimed"]
            assert "(unclaimed)" in {s.subscription for s in await broker.stats()}

            sub = await broker.subscription(topic, name)
            assert await broker.admin.topic_subscriptions(topic) == [name]
            got = await _pull_n(sub, 3)
            assert [d.event.id for d in got] == [e.id for e in early]
            (stats,) = [s for s in await broker.stats() if s.subscription == name]
            assert (stats.pending, stats.in_flight) == (None, 3)  # None: Pub/Sub does not say

    asyncio.run(scenario())


def test_admin_creates_subscriptions_with_the_settings_asked_for(env: tuple[str, Raw]) -> None:
    base, _ = env
    topic, name = _names()

    async def scenario() -> None:
        async with PubSubBroker(base) as broker:
            admin = broker.admin
            assert await admin.create_topic(topic) is True
            assert await admin.create_topic(topic) is False
            settings = SubscriptionSettings(
                ack_deadline_s=3, max_delivery_attempts=7, retention_s=3600, retry_min_s=2
            )
            assert await admin.create_subscription(name, topic, settings) is True
            assert await admin.create_subscription(name, topic, settings) is False
            info = await admin.subscription(name)
            assert info is not None
            assert (info.topic, info.ack_deadline_s, info.retention_s) == (topic, 10, 3600)
            assert (info.dead_letter_topic, info.max_delivery_attempts) == (
                f"{name}.dead-letter",
                7,
            )
            listed = {s.name for s in await admin.list_subscriptions()}
            assert {name, f"{name}.dead-letter"} <= listed
            assert {topic, f"{name}.dead-letter"} <= set(await admin.list_topics())
            # A lease shorter than Pub/Sub's 10 s minimum is kept per pull.
            sub = await broker.subscription(topic, name, ack_deadline_s=3)
            assert sub.ack_deadline_s == 3.0

    asyncio.run(scenario())


def test_errors_name_the_server_and_what_to_fix(
    env: tuple[str, Raw], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, raw = env
    topic, name = _names()

    async def scenario() -> None:
        async with PubSubBroker(
            f"pubsub://p-down?emulator=127.0.0.1:9&dlq={tmp_path}/x.db"
        ) as down:
            with pytest.raises(BrokerUnavailable, match=r"emulator at 127\.0\.0\.1:9.*\?emulator="):
                await down.subscription(topic, name)
        async with PubSubBroker(base) as broker:
            sub = await broker.subscription(topic, name)
            raw.sub.delete_subscription(subscription=raw.subscription(name))
            with pytest.raises(ConfigError, match=f"subscription '{name}': not found"):
                await sub.pull(10, 1.0)

    asyncio.run(scenario())
    for url, match in [
        ("pubsub://proj-1?color=red", "unknown option 'color'"),
        ("pubsub://proj-1?ordering=key", "ordering='key'"),
        ("pubsub://proj-1?max_delivery_attempts=3", "0 \\(none\\) or 5-100"),
        ("pubsub://Bad_Project", "bad Pub/Sub URL"),
        ("pubsub://proj-1?emulator=localhost", "expected HOST:PORT"),
    ]:
        with pytest.raises(ConfigError, match=match):
            PubSubBroker(url)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match=r"no Google Cloud credentials.*\?emulator="):
        PubSubBroker("pubsub://my-project")
