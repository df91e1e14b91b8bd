"""The embedded durable broker: one SQLite file, many processes.

``sqlite:///.scorebus/bus.db``. One table holds every message of every
subscription (fan-out writes one row per subscription); a lease is a
``visible_at`` in the future, so an unacked message becomes visible again when
its ack deadline passes, with ``attempts`` counting deliveries. Competing
consumers in different processes are safe because each lease is one atomic
``UPDATE ... RETURNING``. Dead letters move to their own table in the same
transaction that removes them from the queue.

Unlike Pub/Sub, messages published to a topic that has no subscription yet are
kept and handed to the first subscription created on it, so ``scorebus
publish`` before ``scorebus run`` loses nothing. Publishes are deduplicated by
``(topic, event id)`` within ``dedupe_window_s``, like NATS JetStream's
``Nats-Msg-Id`` window, so the outbox relay cannot publish a result twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from .._sqlite import SqliteThread, path_from_url
from ..errors import ConfigError
from ..events import Event, encode_data
from ..events.codec import format_time
from .base import DeadLetter, Delivery, SubscriptionStats, _loop_event

_SCHEMA = """
CREATE TABLE IF NOT EXISTS subscriptions (
    name TEXT PRIMARY KEY, topic TEXT NOT NULL, ack_deadline_s REAL NOT NULL,
    created_at REAL NOT NULL, acked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY, subscription TEXT, topic TEXT NOT NULL,
    event_id TEXT NOT NULL, type TEXT NOT NULL, source TEXT NOT NULL, time REAL NOT NULL,
    subject TEXT, datacontenttype TEXT NOT NULL, ext BLOB, data BLOB NOT NULL,
    visible_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (subscription, visible_at);
CREATE INDEX IF NOT EXISTS messages_unclaimed ON messages (topic) WHERE subscription IS NULL;
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY, subscription TEXT NOT NULL, topic TEXT NOT NULL,
    event_id TEXT NOT NULL, type TEXT NOT NULL, source TEXT NOT NULL, time REAL NOT NULL,
    subject TEXT, datacontenttype TEXT NOT NULL, ext BLOB, data BLOB NOT NULL,
    attempts INTEGER NOT NULL, reason TEXT NOT NULL, error TEXT NOT NULL,
    dead_at REAL NOT NULL, replayed_at REAL);
CREATE INDEX IF NOT EXISTS dead_letters_sub ON dead_letters (subscription, replayed_at);
CREATE TABLE IF NOT EXISTS recent_ids (
    topic TEXT NOT NULL, event_id TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (topic, event_id)) WITHOUT ROWID;
"""

_COLS = "seq, event_id, type, source, time, subject, datacontenttype, ext, data, attempts"
_ext_decoder = msgspec.json.Decoder(dict[str, str])
_ext_encoder = msgspec.json.Encoder()


class SqliteSubscription:
    """A subscription on the embedded broker; see the module docstring."""

    def __init__(self, broker: SqliteBroker, topic: str, name: str, ack_deadline_s: float) -> None:
        self._broker = broker
        self._db = broker._db
        self.topic = topic
        self.name = name
        self.ack_deadline_s = ack_deadline_s

    async def pull(self, max_messages: int, timeout_s: float) -> list[Delivery]:
        give_up = time.monotonic() + timeout_s
        pause = 0.0005
        while True:
            rows, deadline = await self._db.run(self._lease, max_messages)
            if rows or time.monotonic() >= give_up:
                return [self._delivery(row, deadline) for row in rows]
            # Another process may publish at any moment; poll with a short, growing pause
            # (at most 2 ms: an idle poll is one indexed read, and the pause is latency).
            await self._broker._wait_for_publish(min(pause, max(0.0, give_up - time.monotonic())))
            pause = min(pause * 2, 0.002)

    def _lease(self, conn: Any, max_messages: int) -> tuple[list[tuple[Any, ...]], float]:
        now = time.time()
        deadline = now + self.ack_deadline_s
        # An UPDATE takes the database's write lock even when it matches nothing;
        # a read first keeps idle and polling consumers off the lock.
        if not conn.execute(
            "SELECT 1 FROM messages WHERE subscription = ? AND visible_at <= ? LIMIT 1",
            (self.name, now),
        ).fetchone():
            return [], deadline
        rows = conn.execute(
            "UPDATE messages SET visible_at = ?, attempts = attempts + 1 WHERE seq IN ("
            " SELECT seq FROM messages WHERE subscription = ? AND visible_at <= ?"
            " ORDER BY visible_at LIMIT ?)"
            f" RETURNING {_COLS}",
            (deadline, self.name, now, max_messages),
        ).fetchall()
        rows.sort(key=lambda r: r[0])  # RETURNING order is unspecified; keep publish order
        return rows, deadline

    def _delivery(self, row: tuple[Any, ...], deadline: float) -> Delivery:
        seq, event_id, type_, source, time_, subject, ctype, ext, data, attempts = row
        event = Event(
            id=event_id,
            type=type_,
            source=source,
            time=time_,
            data=data,
            datacontenttype=ctype,
            subject=subject,
            extensions=_ext_decoder.decode(ext) if ext else {},
        )
        return Delivery(
            event, attempt=attempts, handle=(seq, attempts), subscription=self, deadline=deadline
        )

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        if deliveries:
            await self._db.run(self._ack, [d.handle for d in deliveries])

    def _ack(self, conn: Any, handles: list[tuple[int, int]]) -> None:
        with self._db.transaction(conn):
            # Only the current lease holder's ack counts: a message whose lease ran out
            # and was handed to someone else is settled by that consumer.
            cur = conn.executemany("DELETE FROM messages WHERE seq = ? AND attempts = ?", handles)
            conn.execute(
                "UPDATE subscriptions SET acked = acked + ? WHERE name = ?",
                (cur.rowcount, self.name),
            )

    async def nack(self, deliveries: Sequence[Delivery], delay_s: float = 0.0) -> None:
        await self._set_visible(deliveries, delay_s)

    async def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        await self._set_visible(deliveries, seconds)
        deadline = time.time() + seconds
        for d in deliveries:
            d.deadline = deadline

    async def _set_visible(self, deliveries: Sequence[Delivery], after_s: float) -> None:
        if not deliveries:
            return
        at = time.time() + max(0.0, after_s)
        params = [(at, *d.handle) for d in deliveries]

        def run(conn: Any) -> None:
            with self._db.transaction(conn):
                conn.executemany(
                    "UPDATE messages SET visible_at = ? WHERE seq = ? AND attempts = ?", params
                )

        await self._db.run(run)

    async def dead_letter(self, items: Sequence[tuple[Delivery, str, str]]) -> None:
        if not items:
            return
        now = time.time()
        params = [(reason, error[:4000], now, *d.handle) for d, reason, error in items]

        def run(conn: Any) -> None:
            with self._db.transaction(conn):
                for reason, error, at, seq, attempts in params:
                    cur = conn.execute(
                        "INSERT INTO dead_letters (subscription, topic, event_id, type, source,"
                        " time, subject, datacontenttype, ext, data, attempts, reason, error,"
                        " dead_at) SELECT subscription, topic, event_id, type, source, time,"
                        " subject, datacontenttype, ext, data, attempts, ?, ?, ? FROM messages"
                        " WHERE seq = ? AND attempts = ?",
                        (reason, error, at, seq, attempts),
                    )
                    if cur.rowcount:
                        conn.execute("DELETE FROM messages WHERE seq = ?", (seq,))

        await self._db.run(run)


class SqliteBroker:
    """The embedded broker. Use as an async context manager or call :meth:`close`.

    Args:
        url: ``sqlite:///path/to/bus.db`` (parent folders are created).
        dedupe_window_s: publishes of an event id already seen on the topic within
            this window are dropped.
    """

    def __init__(self, url: str, *, dedupe_window_s: float = 120.0) -> None:
        self.url = url
        self.path = path_from_url(url)
        self.dedupe_window_s = dedupe_window_s
        self._db = SqliteThread(self.path, _SCHEMA)
        self._subs: dict[str, SqliteSubscription] = {}
        self._published = asyncio.Event()
        self._last_purge = 0.0

    async def __aenter__(self) -> SqliteBroker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._db.close()

    async def _wait_for_publish(self, timeout_s: float) -> None:
        self._published = _loop_event(self._published)
        self._published.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._published.wait(), timeout_s)

    async def publish(self, topic: str, events: Sequence[Event]) -> None:
        if not events:
            return
        rows = [
            (
                e.id,
                e.type,
                e.source,
                e.time or time.time(),
                e.subject,
                e.datacontenttype,
                _ext_encoder.encode(e.extensions) if e.extensions else None,
                encode_data(e.data),
            )
            for e in events
        ]
        await self._db.run(self._publish, topic, rows)
        self._published.set()

    def _publish(self, conn: Any, topic: str, rows: list[tuple[Any, ...]]) -> None:
        now = time.time()
        with self._db.transaction(conn):
            subs = [
                r[0]
                for r in conn.execute("SELECT name FROM subscriptions WHERE topic = ?", (topic,))
            ]
            targets: list[str | None] = list(subs) or [None]
            fresh = []
            for row in rows:
                # New, or seen longer ago than the window: publish (and restart its window).
                cur = conn.execute(
                    "INSERT INTO recent_ids (topic, event_id, at) VALUES (?, ?, ?)"
                    " ON CONFLICT (topic, event_id) DO UPDATE SET at = excluded.at"
                    " WHERE recent_ids.at < ?",
                    (topic, row[0], now, now - self.dedupe_window_s),
                )
                if cur.rowcount:
                    fresh.append(row)
            conn.executemany(
                "INSERT INTO messages (subscription, topic, event_id, type, source, time, subject,"
                " datacontenttype, ext, data, visible_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [(sub, topic, *row, now) for sub in targets for row in fresh],
            )
            if now - self._last_purge > self.dedupe_window_s / 4:
                self._last_purge = now
                conn.execute("DELETE FROM recent_ids WHERE at < ?", (now - self.dedupe_window_s,))

    async def subscription(
        self, topic: str, name: str, *, ack_deadline_s: float = 60.0
    ) -> SqliteSubscription:
        if not 0 < ack_deadline_s <= 3600:
            raise ConfigError(f"ack_deadline_s={ack_deadline_s}: must be in (0, 3600]")

        def run(conn: Any) -> str:
            with self._db.transaction(conn):
                row = conn.execute(
                    "SELECT topic FROM subscriptions WHERE name = ?", (name,)
                ).fetchone()
                if row is not None:
                    if row[0] == topic:
                        conn.execute(
                            "UPDATE subscriptions SET ack_deadline_s = ? WHERE name = ?",
                            (ack_deadline_s, name),
                        )
                    return str(row[0])
                conn.execute(
                    "INSERT INTO subscriptions (name, topic, ack_deadline_s, created_at)"
                    " VALUES (?, ?, ?, ?)",
                    (name, topic, ack_deadline_s, time.time()),
                )
                # The first subscription on a topic adopts what was published before it.
                conn.execute(
                    "UPDATE messages SET subscription = ? WHERE topic = ? AND subscription IS NULL",
                    (name, topic),
                )
                return topic

        existing = await self._db.run(run)
        if existing != topic:
            raise ConfigError(
                f"subscription {name!r} already exists on topic {existing!r}, not {topic!r}"
            )
        sub = SqliteSubscription(self, topic, name, ack_deadline_s)
        self._subs[name] = sub
        return sub

    async def stats(self) -> list[SubscriptionStats]:
        def run(conn: Any) -> list[SubscriptionStats]:
            now = time.time()
            out = []
            for name, topic, acked in conn.execute(
                "SELECT name, topic, acked FROM subscriptions ORDER BY name"
            ).fetchall():
                pending, in_flight = conn.execute(
                    "SELECT COALESCE(SUM(visible_at <= ?), 0), COALESCE(SUM(visible_at > ?), 0)"
                    " FROM messages WHERE subscription = ?",
                    (now, now, name),
                ).fetchone()
                (dead,) = conn.execute(
                    "SELECT COUNT(*) FROM dead_letters WHERE subscription = ? AND replayed_at IS NULL",
                    (name,),
                ).fetchone()
                out.append(
                    SubscriptionStats(
                        subscription=name,
                        topic=topic,
                        pending=pending,
                        in_flight=in_flight,
                        acked=acked,
                        dead_lettered=dead,
                    )
                )
            for topic, count in conn.execute(
                "SELECT topic, COUNT(*) FROM messages WHERE subscription IS NULL GROUP BY topic"
            ).fetchall():
                out.append(SubscriptionStats.unclaimed(topic, count))
            return out

        return await self._db.run(run)

    async def dead_letters(
        self, *, subscription: str | None = None, limit: int = 100, include_replayed: bool = False
    ) -> list[DeadLetter]:
        where, params = [], []
        if subscription is not None:
            where.append("subscription = ?")
            params.append(subscription)
        if not include_replayed:
            where.append("replayed_at IS NULL")
        sql = (
            "SELECT id, subscription, topic, event_id, type, source, time, subject,"
            " datacontenttype, ext, data, attempts, reason, error, dead_at, replayed_at"
            " FROM dead_letters"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY id LIMIT ?"
        )
        rows = await self._db.run(lambda conn: conn.execute(sql, (*params, limit)).fetchall())
        return [_dead_letter(r) for r in rows]

    async def dead_letter_reasons(
        self, subscription: str, *, id_prefix: str = ""
    ) -> dict[str, str]:
        """Event id -> reason of the live dead letters of a subscription (ids by prefix)."""
        rows = await self._db.run(
            lambda conn: conn.execute(
                "SELECT event_id, reason FROM dead_letters WHERE subscription = ?"
                " AND replayed_at IS NULL AND event_id >= ? AND event_id < ?",
                (subscription, id_prefix, id_prefix + "\uffff"),
            ).fetchall()
        )
        return dict(rows)

    async def replay(self, ids: Sequence[int]) -> int:
        if not ids:
            return 0

        def run(conn: Any) -> int:
            now = time.time()
            done = 0
            with self._db.transaction(conn):
                for dl_id in ids:
                    cur = conn.execute(
                        "INSERT INTO messages (subscription, topic, event_id, type, source, time,"
                        " subject, datacontenttype, ext, data, visible_at) SELECT subscription,"
                        " topic, event_id, type, source, time, subject, datacontenttype, ext,"
                        " data, ? FROM dead_letters WHERE id = ? AND replayed_at IS NULL",
                        (now, dl_id),
                    )
                    if cur.rowcount:
                        conn.execute(
                            "UPDATE dead_letters SET replayed_at = ? WHERE id = ?", (now, dl_id)
                        )
                        done += 1
            return done

        count: int = await self._db.run(run)
        self._published.set()
        return count


def _dead_letter(row: tuple[Any, ...]) -> DeadLetter:
    (
        id_,
        sub,
        topic,
        event_id,
        type_,
        source,
        time_,
        subject,
        ctype,
        ext,
        data,
        attempts,
        reason,
        error,
        dead_at,
        replayed_at,
    ) = row
    attrs = {
        "id": event_id,
        "type": type_,
        "source": source,
        "time": format_time(time_),
        "datacontenttype": ctype,
    }
    if subject:
        attrs["subject"] = subject
    if ext:
        attrs.update(_ext_decoder.decode(ext))
    return DeadLetter(
        id=id_,
        subscription=sub,
        topic=topic,
        event_id=event_id,
        event_type=type_,
        reason=reason,
        error=error,
        attempts=attempts,
        dead_at=dead_at,
        payload=bytes(data),
        attributes=attrs,
        replayed_at=replayed_at,
    )
