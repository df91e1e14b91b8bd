"""The embedded broker: publish (fan-out, dedupe), subscriptions, stats, dead letters.

See the package docstring for the design and ``subscription.py`` for leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from ..._sqlite import SqliteThread, path_from_url
from ...errors import ConfigError
from ...events import Event, encode_data
from ..base import DeadLetter, SubscriptionStats, _loop_event
from ..dlq_store import letters_filter
from .schema import SCHEMA, dead_letter_of, ext_encoder, migrate, next_seq
from .subscription import SqliteSubscription


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
        self._db = SqliteThread(self.path, SCHEMA, migrate=migrate)
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
                ext_encoder.encode(e.extensions) if e.extensions else None,
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
            first = next_seq(conn)
            conn.executemany(
                "INSERT INTO messages (seq, subscription, topic, event_id, type, source, time,"
                " subject, datacontenttype, ext, data, visible_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (first + i, sub, topic, *row, now)
                    for i, (sub, row) in enumerate((s, r) for s in targets for r in fresh)
                ],
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
                pending, in_flight = _counts(conn, name, now)
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
        where, params = letters_filter(subscription, include_replayed)
        sql = (
            "SELECT id, subscription, topic, event_id, type, source, time, subject,"
            " datacontenttype, ext, data, attempts, reason, error, dead_at, replayed_at"
            f" FROM dead_letters{where} ORDER BY id LIMIT ?"
        )
        rows = await self._db.run(lambda conn: conn.execute(sql, (*params, limit)).fetchall())
        return [dead_letter_of(r) for r in rows]

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
                        "INSERT INTO messages (seq, subscription, topic, event_id, type, source,"
                        " time, subject, datacontenttype, ext, data, visible_at) SELECT ?,"
                        " subscription, topic, event_id, type, source, time, subject,"
                        " datacontenttype, ext, data, ? FROM dead_letters"
                        " WHERE id = ? AND replayed_at IS NULL",
                        (next_seq(conn), now, dl_id),
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


def _counts(conn: sqlite3.Connection, name: str, now: float) -> tuple[int, int]:
    """(pending, in flight) of a subscription, over its three kinds of rows (schema.py)."""
    (cursor,) = conn.execute("SELECT cursor FROM subscriptions WHERE name = ?", (name,)).fetchone()
    due, held = conn.execute(
        "SELECT COALESCE(SUM(visible_at <= ?), 0), COALESCE(SUM(visible_at > ?), 0)"
        " FROM messages WHERE subscription = ? AND attempts > 0",
        (now, now, name),
    ).fetchone()
    fresh, leased = conn.execute(
        "SELECT COALESCE(SUM(seq > ?), 0), COALESCE(SUM(seq <= ?), 0)"
        " FROM messages WHERE subscription = ? AND attempts = 0",
        (cursor, cursor, name),
    ).fetchone()
    (live,) = conn.execute(
        "SELECT COUNT(*) FROM leases l JOIN messages m ON m.subscription = l.subscription"
        " AND m.seq BETWEEN l.lo AND l.hi AND m.attempts = 0"
        " WHERE l.subscription = ? AND l.deadline > ?",
        (name, now),
    ).fetchone()
    # Rows of a range lease that ran out are due again (the next pull reclaims them).
    return due + fresh + leased - live, held + live
