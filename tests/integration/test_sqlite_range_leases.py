"""The embedded broker's range leases: what the broker contract cannot see.

A pull of fresh messages must write one lease row and leave the message rows
alone (that is what makes it cheap), and every way out of a range lease (ack,
partial ack, nack, dead letter, extension, expiry) must keep the contract's
promises per message. The file is inspected with sqlite3 beside the broker.
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

from scorebus.brokers import Delivery, Subscription, SubscriptionStats
from scorebus.brokers.sqlite import SqliteBroker
from scorebus.brokers.sqlite.subscription import _runs
from scorebus.events import Event

TOPIC, SUB = "tx", "tx.score"


def _events(n: int) -> list[Event]:
    return [Event.new("test.event", {"n": i}) for i in range(n)]


def _rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


async def _pull(sub: Subscription, n: int) -> list[Delivery]:
    got: list[Delivery] = []
    for _ in range(40):
        got += await sub.pull(n - len(got), 0.05)
        if len(got) >= n:
            break
    return got


async def _stats(broker: SqliteBroker) -> SubscriptionStats:
    return {s.subscription: s for s in await broker.stats()}[SUB]


def test_a_pull_of_fresh_messages_writes_one_lease_and_no_message_row(tmp_path: Path) -> None:
    db = tmp_path / "bus.db"

    async def scenario() -> None:
        async with SqliteBroker(f"sqlite:///{db}") as broker:
            sub = await broker.subscription(TOPIC, SUB, ack_deadline_s=30)
            await broker.publish(TOPIC, _events(5))
            got = await _pull(sub, 5)
            assert [d.attempt for d in got] == [1] * 5
            assert _rows(db, "SELECT COUNT(*) FROM leases") == [(1,)]
            # Message rows untouched: no per-row attempt, visible_at, or index entry.
            assert _rows(db, "SELECT DISTINCT attempts FROM messages") == [(0,)]
            stats = await _stats(broker)
            assert (stats.pending, stats.in_flight) == (0, 5)

            await sub.ack(got[:3])
            assert _rows(db, "SELECT COUNT(*) FROM leases") == [(1,)]  # two still held
            await sub.ack(got[3:])
            assert _rows(db, "SELECT COUNT(*) FROM leases") == [(0,)]
            stats = await _stats(broker)
            assert (stats.pending, stats.in_flight, stats.acked) == (0, 0, 5)

    asyncio.run(scenario())


def test_acks_that_skip_messages_of_a_range_delete_only_their_own(tmp_path: Path) -> None:
    # A consecutive run of a lease is deleted as one range; anything else row by
    # row. Acking every other message must not take the ones in between.
    async def scenario() -> None:
        async with SqliteBroker(f"sqlite:///{tmp_path}/bus.db") as broker:
            sub = await broker.subscription(TOPIC, SUB, ack_deadline_s=30)
            await broker.publish(TOPIC, _events(8))
            got = await _pull(sub, 8)
            await sub.ack(got[::2])
            assert (await _stats(broker)).in_flight == 4
            await sub.ack(got[5:8])  # a run inside the lease, over an acked row
            stats = await _stats(broker)
            assert (stats.in_flight, stats.acked) == (2, 6)
            await sub.ack([got[1], got[3]])
            done = await _stats(broker)
            assert (done.pending, done.in_flight, done.acked) == (0, 0, 8)

    asyncio.run(scenario())


def test_what_an_expired_range_lease_left_unacked_is_redelivered_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with SqliteBroker(f"sqlite:///{tmp_path}/bus.db") as broker:
            sub = await broker.subscription(TOPIC, SUB, ack_deadline_s=0.3)
            await broker.publish(TOPIC, _events(4))
            first = await _pull(sub, 4)
            await sub.ack(first[:2])
            await asyncio.sleep(0.35)
            expired = await _stats(broker)
            assert (expired.pending, expired.in_flight) == (2, 0)

            again = await _pull(sub, 2)
            assert [d.event.id for d in again] == [d.event.id for d in first[2:]]
            assert [d.attempt for d in again] == [2, 2]
            await sub.ack(first[2:])  # the old holder's late ack does not count
            assert (await _stats(broker)).acked == 2
            await sub.ack(again)
            done = await _stats(broker)
            assert (done.pending, done.in_flight, done.acked) == (0, 0, 4)

    asyncio.run(scenario())


def test_nack_and_dead_letter_take_one_message_out_of_its_range(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with SqliteBroker(f"sqlite:///{tmp_path}/bus.db") as broker:
            sub = await broker.subscription(TOPIC, SUB, ack_deadline_s=30)
            await broker.publish(TOPIC, _events(3))
            a, b, c = await _pull(sub, 3)
            await sub.nack([a])
            await sub.dead_letter([(b, "schema", "bad field")])

            (redelivered,) = await _pull(sub, 3)
            assert (redelivered.event.id, redelivered.attempt) == (a.event.id, 2)
            (letter,) = await broker.dead_letters()
            assert (letter.event_id, letter.attempts) == (b.event.id, 1)
            stats = await _stats(broker)
            assert (stats.pending, stats.in_flight) == (0, 2)  # c in its range, a per-row
            await sub.ack([c, redelivered])
            done = await _stats(broker)
            assert (done.pending, done.in_flight, done.acked, done.dead_lettered) == (0, 0, 2, 1)

    asyncio.run(scenario())


def test_extending_a_range_lease_keeps_its_messages_invisible(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with SqliteBroker(f"sqlite:///{tmp_path}/bus.db") as broker:
            sub = await broker.subscription(TOPIC, SUB, ack_deadline_s=0.2)
            await broker.publish(TOPIC, _events(2))
            held = await _pull(sub, 2)
            await sub.extend(held, 1.0)
            await asyncio.sleep(0.3)
            assert await sub.pull(10, 0.05) == []
            await sub.ack(held)
            assert (await _stats(broker)).acked == 2

    asyncio.run(scenario())


def test_a_sequence_number_is_never_reused_behind_the_cursor(tmp_path: Path) -> None:
    # SQLite hands out max(rowid) + 1: once the newest rows are acked (deleted), a
    # new message could get a seq the cursor has passed and never be delivered.
    async def scenario() -> None:
        async with SqliteBroker(f"sqlite:///{tmp_path}/bus.db") as broker:
            sub = await broker.subscription(TOPIC, SUB)
            await broker.publish(TOPIC, _events(3))
            await sub.ack(await _pull(sub, 3))
            late = _events(1)
            await broker.publish(TOPIC, late)
            (d,) = await _pull(sub, 1)
            assert d.event.id == late[0].id

    asyncio.run(scenario())


_OLD_SCHEMA = """
CREATE TABLE subscriptions (
    name TEXT PRIMARY KEY, topic TEXT NOT NULL, ack_deadline_s REAL NOT NULL,
    created_at REAL NOT NULL, acked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE messages (
    seq INTEGER PRIMARY KEY, subscription TEXT, topic TEXT NOT NULL,
    event_id TEXT NOT NULL, type TEXT NOT NULL, source TEXT NOT NULL, time REAL NOT NULL,
    subject TEXT, datacontenttype TEXT NOT NULL, ext BLOB, data BLOB NOT NULL,
    visible_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0);
CREATE INDEX messages_ready ON messages (subscription, visible_at);
INSERT INTO subscriptions VALUES ('tx.score', 'tx', 60, 0, 7);
INSERT INTO messages VALUES
    (1, 'tx.score', 'tx', 'in-flight', 't', 's', 0, NULL, 'application/json', NULL, X'7B7D',
     0, 1),
    (2, 'tx.score', 'tx', 'waiting', 't', 's', 0, NULL, 'application/json', NULL, X'7B7D', 0, 0);
"""


def test_a_bus_file_from_before_range_leases_is_migrated_in_place(tmp_path: Path) -> None:
    db = tmp_path / "bus.db"
    with closing(sqlite3.connect(db)) as conn:
        conn.executescript(_OLD_SCHEMA)

    async def scenario() -> None:
        async with SqliteBroker(f"sqlite:///{db}") as broker:
            sub = await broker.subscription(TOPIC, SUB)
            got = {d.event.id: d.attempt for d in await _pull(sub, 2)}
            # The old in-flight row's lease (visible_at 0) ran out long ago: attempt 2.
            assert got == {"in-flight": 2, "waiting": 1}
            stats = await _stats(broker)
            assert (stats.pending, stats.in_flight, stats.acked) == (0, 2, 7)

    asyncio.run(scenario())
    names = {r[0] for r in _rows(db, "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "messages_ready" not in names
    assert {"messages_sub", "messages_retry"} <= names


def test_only_consecutive_positions_of_one_lease_make_a_range_ack() -> None:
    # (seq, attempts, lease, position in the lease's pull)
    whole = [(10, 0, 7, 0), (12, 0, 7, 1), (15, 0, 7, 2)]
    assert _runs(whole) == ([], [(10, 15)])
    # A repeat can hide a gap: positions 0, 0, 2 span three but miss 1.
    repeat = [(10, 0, 7, 0), (10, 0, 7, 0), (15, 0, 7, 2)]
    assert _runs(repeat) == ([(10, 0), (10, 0), (15, 0)], [])
    assert _runs([(10, 0, 7, 0), (15, 0, 7, 2)]) == ([(10, 0), (15, 0)], [])
    assert _runs([(9, 2, None, 0)]) == ([(9, 2)], [])
