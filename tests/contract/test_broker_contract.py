"""The contract every broker passes: publish, lease, ack/nack/extend, dead letters, replay.

Add a backend by adding a ``pytest.param`` to ``BROKERS``; each entry builds a
fresh broker for one test (it is used as an async context manager inside the
test's event loop).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.contract import backends

from scorebus.brokers import Broker, Delivery, Subscription, SubscriptionStats, open_broker
from scorebus.brokers.memory import MemoryBroker
from scorebus.brokers.sqlite import SqliteBroker
from scorebus.errors import ConfigError
from scorebus.events import Event, encode_data

BrokerFactory = Callable[[], Broker]

BROKERS = [
    pytest.param(lambda tmp_path: MemoryBroker(), id="memory"),
    pytest.param(lambda tmp_path: SqliteBroker(f"sqlite:///{tmp_path}/bus.db"), id="sqlite"),
    *backends.broker_params(),
]


@pytest.fixture(params=BROKERS)
def make_broker(request: pytest.FixtureRequest, tmp_path: Path) -> BrokerFactory:
    build = request.param
    return lambda: build(tmp_path)


def _names() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return f"topic-{suffix}", f"sub-{suffix}"


def _events(n: int, type_: str = "test.event") -> list[Event]:
    return [Event.new(type_, {"n": i}) for i in range(n)]


async def _stats(broker: Broker, name: str) -> SubscriptionStats:
    by_name = {s.subscription: s for s in await broker.stats()}
    return by_name[name]


def _pending(stats: SubscriptionStats, expected: int) -> int:
    """``stats.pending``; a broker that cannot count (``None``) is taken at its word."""
    return expected if stats.pending is None else stats.pending


async def _pull_n(sub: Subscription, n: int, timeout_s: float = 2.0) -> list[Delivery]:
    got: list[Delivery] = []
    give_up = time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < give_up:
        got += await sub.pull(n - len(got), 0.05)
    return got


def test_publish_pull_ack_leaves_nothing_pending(make_broker: BrokerFactory) -> None:
    async def scenario() -> None:
        topic, name = _names()
        async with make_broker() as broker:
            sub = await broker.subscription(topic, name)
            events = _events(5)
            await broker.publish(topic, events)

            assert _pending(await _stats(broker, name), 5) == 5
            got = await _pull_n(sub, 5)
            assert [d.event.id for d in got] == [e.id for e in events]
            assert all(d.attempt == 1 for d in got)
            leased = await _stats(broker, name)
            assert (_pending(leased, 0), leased.in_flight) == (0, 5)

            await sub.ack(got)

            stats = await _stats(broker, name)
            assert (_pending(stats, 0), stats.in_flight, stats.acked) == (0, 0, 5)
            assert await sub.pull(10, 0.05) == []

    asyncio.run(scenario())


def test_delivered_event_keeps_attributes_and_encodes_data(make_broker: BrokerFactory) -> None:
    async def scenario() -> None:
        topic, name = _names()
        async with make_broker() as broker:
            sub = await broker.subscription(topic, name)
            cause = Event.new("order.created")
            event = Event.new(
                "order.scored",
                {"score": 0.5},
                source="tests",
                subject="order-7",
                caused_by=cause,
                extensions={"tenant": "acme"},
            )
            await broker.publish(topic, [event])

            (d,) = await _pull_n(sub, 1)

            assert d.event.id == event.id
            assert (d.event.type, d.event.source, d.event.subject) == (
                "order.scored",
                "tests",
                "order-7",
            )
            assert d.event.extensions == event.extensions
            assert d.event.causation_id == cause.id
            assert d.event.data == encode_data({"score": 0.5})
            assert d.event.time == pytest.approx(event.time)
            assert d.size == len(d.event.data)
            assert 0 < d.remaining_s() <= sub.ack_deadline_s
            await d.ack()

    asyncio.run(scenario())


def test_pull_honours_max_messages_and_publish_order(make_broker: BrokerFactory) -> None:
    async def scenario() -> None:
        topic, name = _names()
        async with make_broker() as broker:
            sub = await broker.subscription(topic, name)
            events = _events(7)
            await broker.publish(topic, events)

            first = await sub.pull(3, 0.5)
            rest = await _pull_n(sub, 4)

            assert len(first) == 3
            assert [d.event.id for d in first + rest] == [e.id for e in events]

    asyncio.run(scenario())


def test_pull_on_an_empty_subscription_returns_after_the_timeout(
    make_broker: BrokerFactory,
) -> None:
    async def scenario() -> None:
        topic, name = _names()
        async with make_broker() as broker:
            sub = await broker.subscription(topic, name)
            started = time.monotonic()

            assert await sub.pull(10, 0.1) == []
            assert 0.09 <= time.monotonic() - started < 1.0

    asyncio.run(scenario())


def test_a_waiting_pull_wakes_up_on_publish(make_broker: BrokerFactory) -> None:
    async def scenario() -> None:
        topic, name = _names()
        async with make_broker() as broker:
            sub = await broker.subscription(topic, name)

            async def publish_later() -> None:
                await asyncio.sleep(0.05)
                await broker.publish(topic, _events(1))

            started = time.monotonic()
            publisher = asyncio.create_task(publish_later())
            got = await sub.pull(10, 5.0)
            await publisher

            assert len(got) == 1
            assert time.monotonic() - started < 2.0

    asyncio.run(scenario())


def test_fan_out_to_every_subscription_of_a_topic(make_broker: BrokerFactory) -> None:
    async def scenario() -> None:
        topic, name = _names()
        async with make_broker() as broker:
            one = await broker.subscription(topic, f"{name}-one")
            two = await broker.subscription(topic, f"{name}-two")
            other = await broker.subscription(f"{topic}-other", f"{name}-other")
            events = _events(4)
            await broker.publish(topic, events)

            got_one = await _pull_n(one, 4)
            got_two = await _pull_n(two, 4)
            await one.ack(got_one)

            ids = [e.id for e in events]
            assert [d.event.id for d in got_one] == ids
            assert [d.event.id for d in got_two] == ids
            assert await other.pull(10, 0.05) == []
            # Acking on one subscription settles nothing on the other.
            assert (await _stats(broker, f"{name}-two")).in_flight == 4
            assert (await _stats(broker, f"{name}-one")).acked == 4

    asyncio.run(scenario())


def test_messages_published_before_any_subscription_go_to_the_first_one(
    make_broker: BrokerFactory,
) -> None:
    async def scenario() -> None:
        topic, name = _names()
        async with make_broker() as broker:
            early = _events(3)
            await broker.publish(topic, early)

            first = await broker.subscription(topic, f"{name}-first")
            second = await broker.subscription(topic, f"{name}-second")
            late = _events(1)
            await broker.publish(topic, late)

            got_first = await _pull_n(first, 4)
            got_second = await _pull_n(second, 1)

            assert [d.event.id for d in got_first] == [e.id for e in early + late]
            assert [d.event.id for d in got_second] == [late[0].id]
            assert await second.pull(10, 0.05) == []

    asyncio.run(scenario())


def test_nack_with_delay_redelivers_after_the_delay(make_broker: BrokerFactory) -> None:
    async def scenario() -> None:
        topic, name = _names()
        async with make_broker() as broker:
            sub = await broker.subscription(topic, name)
            await broker.publish(topic, _events(1))
            (d,) = await _pull_n(sub, 1)

            nacked_at = time.monotonic()
            await d.nack(0.2)

            assert await sub.pull(10, 0.05) == []
            (again,) = await _pull_n(sub, 1)
            assert time.monotonic() - nacked_at >= 0.18
            assert again.event.id == d.event.id
            assert again.attempt == 2

    asyncio.run(scenario())


def test_nack_without_delay_redelivers_at_once(make_broker: BrokerFactory) -> None:
    async def scenario() -> None:
        topic, name = _names()
        async with make_broker() as broker:
            sub = await broker.subscription(topic, name)
            await broker.publish(topic, _events(1))
            (d,) = await _pull_n(sub, 1)

            await sub.nack([d])

            (again,) = await sub.pull(10, 0.05)
            assert again.attempt == 2

    asyncio.run(scenario())


def test_an_expired_lease_is_redelivered_and_the_stale_ack_is_ignored(
    make_broker: BrokerFactory,
) -> None:
    async def scenario() -> None:
        topic, name = _names()
        async with make_broker() as broker:
            sub = await broker.subscription(topic, name, ack_deadline_s=0.2)
            await broker.publish(topic, _events(1))
            (stale,) = await _pull_n(sub, 1)
            assert stale.attempt == 1
            assert await sub.pull(10, 0.05) == []

            await asyncio.sleep(0.25)
            (fresh,) = await _pull_n(sub, 1)
            assert fresh.event.id == stale.event.id
            assert fresh.attempt == 2

            await stale.ack()
            await stale.nack()
            await stale.extend(0.0)
            after_stale = await _stats(broker, name)
            assert (after_stale.in_flight, after_stale.acked) == (1, 0)
            assert await sub.pull(10, 0.05) == []

            await fresh.ack()
            done = await _stats(broker, name)
            assert (_pending(done, 0), done.in_flight, done.acked) == (0, 0, 1)

    asyncio.run(scenario())


def test_extend_keeps_a_delivery_invisible(make_broker: BrokerFactory) -> None:
    async def scenario() -> None:
        topic, name = _names()
        async with make_broker() as broker:
            sub = await broker.subscription(topic, name, ack_deadline_s=0.2)
            await broker.publish(topic, _events(1))
            (d,) = await _pull_n(sub, 1)

            await d.extend(1.0)
            await asyncio.sleep(0.3)

            assert await sub.pull(10, 0.05) == []
            assert d.remaining_s() > 0.5
            await d.ack()
            stats = await _stats(broker, name)
            assert (_pending(stats, 0), stats.in_flight, stats.acked) == (0, 0, 1)

    asyncio.run(scenario())


def test_dead_letter_keeps_reason_error_attempts_and_payload(make_broker: BrokerFactory) -> None:
    async def scenario() -> None:
        topic, name = _names()
        async with make_broker() as broker:
            sub = await broker.subscription(topic, name)
            keep, bad = _events(2)
            await broker.publish(topic, [keep, bad])
            first = await _pull_n(sub, 2)
            await sub.nack(first)
            again = await _pull_n(sub, 2)
            bad_delivery = next(d for d in again if d.event.id == bad.id)

            await sub.dead_letter([(bad_delivery, "schema", "$.amount: expected float")])

            (letter,) = await broker.dead_letters()
            assert letter.event_id == bad.id
            assert letter.event_type == bad.type
            assert (letter.subscription, letter.topic) == (name, topic)
            assert letter.reason == "schema"
            assert letter.error == "$.amount: expected float"
            assert letter.attempts == 2
            assert letter.payload == encode_data(bad.data)
            assert letter.replayed_at is None
            assert await broker.dead_letters(subscription=f"{name}-other") == []
            stats = await _stats(broker, name)
            assert (stats.dead_lettered, stats.in_flight) == (1, 1)
            # The dead-lettered message is gone from the queue: its lease cannot expire back.
            await sub.nack([d for d in again if d.event.id == keep.id])
            (left,) = await _pull_n(sub, 1)
            assert left.event.id == keep.id

    asyncio.run(scenario())


def test_replay_puts_a_dead_letter_back_with_a_fresh_attempt_count(
    make_broker: BrokerFactory,
) -> None:
    async def scenario() -> None:
        topic, name = _names()
        async with make_broker() as broker:
            sub = await broker.subscription(topic, name)
            (event,) = _events(1)
            await broker.publish(topic, [event])
            (d,) = await _pull_n(sub, 1)
            await d.nack()
            (d,) = await _pull_n(sub, 1)
            await sub.dead_letter([(d, "max_attempts", "gave up")])
            (letter,) = await broker.dead_letters()

            assert await broker.replay([letter.id]) == 1

            (back,) = await _pull_n(sub, 1)
            assert back.event.id == event.id
            assert back.event.data == encode_data(event.data)
            assert back.attempt == 1
            assert await broker.dead_letters() == []
            (replayed,) = await broker.dead_letters(include_replayed=True)
            assert replayed.id == letter.id
            assert replayed.replayed_at is not None
            assert (await _stats(broker, name)).dead_lettered == 0
            assert await broker.replay([letter.id]) == 0
            await back.ack()
            assert await sub.pull(10, 0.05) == []

    asyncio.run(scenario())


def test_same_subscription_name_on_another_topic_is_a_config_error(
    make_broker: BrokerFactory,
) -> None:
    async def scenario() -> None:
        topic, name = _names()
        async with make_broker() as broker:
            sub = await broker.subscription(topic, name)
            again = await broker.subscription(topic, name)
            assert (again.topic, again.name) == (sub.topic, sub.name)

            with pytest.raises(ConfigError, match=f"{name}.*{topic}"):
                await broker.subscription(f"{topic}-other", name)

    asyncio.run(scenario())


# ---------------------------------------------------------------- in-memory broker only


def test_a_named_memory_broker_outlives_an_event_loop() -> None:
    # ``memory://NAME`` shares one broker per name in the process, e.g. between a
    # publishing step and a worker that each run their own ``asyncio.run``.
    url = f"memory://shared-{uuid.uuid4().hex[:8]}"
    topic, name = _names()

    async def publish() -> None:
        broker = open_broker(url)
        sub = await broker.subscription(topic, name)
        assert await sub.pull(10, 0.02) == []
        await broker.publish(topic, _events(2))

    async def consume() -> int:
        sub = await open_broker(url).subscription(topic, name)
        got = await _pull_n(sub, 3, timeout_s=0.2)
        await sub.ack(got)
        return len(got)

    asyncio.run(publish())
    assert asyncio.run(consume()) == 2


# ---------------------------------------------------------------- embedded broker only


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/bus-{uuid.uuid4().hex[:8]}.db"


def test_open_broker_builds_each_backend(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with open_broker(_sqlite_url(tmp_path)) as broker:
            assert isinstance(broker, SqliteBroker)
        name = f"shared-{uuid.uuid4().hex[:8]}"
        assert open_broker(f"memory://{name}") is open_broker(f"memory://{name}")
        with pytest.raises(ConfigError, match=r"valid schemes are sqlite://.*memory://"):
            open_broker("kafka://localhost")

    asyncio.run(scenario())


def test_sqlite_two_brokers_on_one_file_never_share_a_lease(tmp_path: Path) -> None:
    url = _sqlite_url(tmp_path)

    async def scenario() -> None:
        topic, name = _names()
        async with SqliteBroker(url) as a, SqliteBroker(url) as b:
            sub_a = await a.subscription(topic, name)
            sub_b = await b.subscription(topic, name)
            events = _events(300)
            for i in range(0, 300, 50):
                await a.publish(topic, events[i : i + 50])

            async def consume(sub: Subscription) -> list[str]:
                seen: list[str] = []
                empty = 0
                while empty < 3:
                    got = await sub.pull(7, 0.05)
                    empty = 0 if got else empty + 1
                    seen += [d.event.id for d in got]
                    # Work on what was pulled, as a consumer does: without it one
                    # broker can drain all 300 before the other's first pull lands.
                    await asyncio.sleep(0.002 if got else 0)
                return seen

            seen_a, seen_b = await asyncio.gather(consume(sub_a), consume(sub_b))

            assert len(seen_a) + len(seen_b) == 300
            assert set(seen_a).isdisjoint(seen_b)
            assert set(seen_a) | set(seen_b) == {e.id for e in events}
            assert seen_a and seen_b

    asyncio.run(scenario())


def test_sqlite_publish_dedupes_an_event_id_per_topic(tmp_path: Path) -> None:
    async def scenario() -> None:
        topic, name = _names()
        async with SqliteBroker(_sqlite_url(tmp_path)) as broker:
            sub = await broker.subscription(topic, name)
            other = await broker.subscription(f"{topic}-2", f"{name}-2")
            (event,) = _events(1)

            await broker.publish(topic, [event])
            await broker.publish(topic, [event, event])
            await broker.publish(f"{topic}-2", [event])

            (d,) = await _pull_n(sub, 1)
            assert await sub.pull(10, 0.05) == []
            assert len(await _pull_n(other, 1)) == 1
            # A dead letter of a deduplicated id can still be replayed.
            await sub.dead_letter([(d, "schema", "bad")])
            (letter,) = await broker.dead_letters()
            assert await broker.replay([letter.id]) == 1
            (back,) = await _pull_n(sub, 1)
            assert back.event.id == event.id
            assert back.attempt == 1

    asyncio.run(scenario())


def test_sqlite_dedupe_forgets_an_id_after_the_window(tmp_path: Path) -> None:
    async def scenario() -> None:
        topic, name = _names()
        async with SqliteBroker(_sqlite_url(tmp_path), dedupe_window_s=0.2) as broker:
            sub = await broker.subscription(topic, name)
            (event,) = _events(1)

            await broker.publish(topic, [event])
            await asyncio.sleep(0.3)
            await broker.publish(topic, [event])

            got = await _pull_n(sub, 2, timeout_s=0.5)
            assert [d.event.id for d in got] == [event.id, event.id]

    asyncio.run(scenario())


def test_sqlite_data_survives_close_and_reopen(tmp_path: Path) -> None:
    url = _sqlite_url(tmp_path)
    topic, name = _names()
    events = _events(3)

    async def before() -> None:
        async with SqliteBroker(url) as broker:
            sub = await broker.subscription(topic, name)
            await broker.publish(topic, events)
            await broker.publish(f"{topic}-unclaimed", _events(2))
            first = await _pull_n(sub, 1)
            await sub.ack(first)
            (second,) = await _pull_n(sub, 1)
            await sub.dead_letter([(second, "schema", "bad field")])

    async def after() -> None:
        async with SqliteBroker(url) as broker:
            stats = await _stats(broker, name)
            assert (stats.pending, stats.acked, stats.dead_lettered) == (1, 1, 1)
            (letter,) = await broker.dead_letters()
            assert (letter.event_id, letter.reason) == (events[1].id, "schema")
            sub = await broker.subscription(topic, name)
            (d,) = await _pull_n(sub, 1)
            assert d.event.id == events[2].id
            late = await broker.subscription(f"{topic}-unclaimed", f"{name}-late")
            assert len(await _pull_n(late, 2)) == 2

    asyncio.run(before())
    asyncio.run(after())


def test_sqlite_rejects_a_bad_url_and_ack_deadline(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bad SQLite URL"):
        SqliteBroker("sqlite://relative.db")

    async def scenario() -> None:
        async with SqliteBroker(_sqlite_url(tmp_path)) as broker:
            with pytest.raises(ConfigError, match="ack_deadline_s"):
                await broker.subscription("topic", "sub", ack_deadline_s=0)

    asyncio.run(scenario())
