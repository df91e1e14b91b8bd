"""scorebus's own dead-letter store, for brokers that have none to query.

MQTT has no dead-letter feature at all, and the dead letters of NATS, Redis or
RabbitMQ cannot be listed with their reasons; those adapters move a dead
letter here (then ack it on the broker), so ``scorebus dlq`` works the same
everywhere. Rows are unique per (subscription, event id) while not replayed,
so a crash between the write here and the broker ack cannot make two.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from .._sqlite import SqliteThread
from ..events import Event
from ..events.codec import format_time
from .base import DeadLetter, Delivery

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY, subscription TEXT NOT NULL, topic TEXT NOT NULL,
    event_id TEXT NOT NULL, event_type TEXT NOT NULL, attributes BLOB NOT NULL,
    data BLOB NOT NULL, attempts INTEGER NOT NULL, reason TEXT NOT NULL, error TEXT NOT NULL,
    dead_at REAL NOT NULL, replayed_at REAL);
CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_live ON dead_letters (subscription, event_id)
    WHERE replayed_at IS NULL;
"""

_enc = msgspec.json.Encoder()
_attrs = msgspec.json.Decoder(dict[str, str])


class DeadLetterStore:
    """Dead letters in a SQLite file (default ``.scorebus/dead_letters.db``)."""

    def __init__(self, path: str | Path = ".scorebus/dead_letters.db") -> None:
        self._db = SqliteThread(Path(path), _SCHEMA)

    async def add(
        self, topic: str, subscription: str, items: Sequence[tuple[Delivery, str, str]]
    ) -> None:
        """Keep each ``(delivery, reason, error)``."""
        await self.add_events(
            topic, subscription, [(d.event, d.attempt, reason, error) for d, reason, error in items]
        )

    async def add_events(
        self, topic: str, subscription: str, items: Sequence[tuple[Event, int, str, str]]
    ) -> None:
        """Keep ``(event, attempts, reason, error)`` items that never became a delivery
        (a push body that could not even be parsed)."""
        now = time.time()
        rows = []
        for e, attempts, reason, error in items:
            attrs = {
                "id": e.id,
                "type": e.type,
                "source": e.source,
                **e.extensions,
                "time": format_time(e.time),
                "datacontenttype": e.datacontenttype,
            }
            if e.subject is not None:
                attrs["subject"] = e.subject
            data = e.data if isinstance(e.data, bytes | bytearray) else _enc.encode(e.data)
            rows.append(
                (
                    subscription,
                    topic,
                    e.id,
                    e.type,
                    _enc.encode(attrs),
                    bytes(data),
                    attempts,
                    reason,
                    error[:4000],
                    now,
                )
            )

        def run(conn: Any) -> None:
            with self._db.transaction(conn):
                conn.executemany(
                    "INSERT OR IGNORE INTO dead_letters (subscription, topic, event_id, event_type,"
                    " attributes, data, attempts, reason, error, dead_at)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?)",
                    rows,
                )

        await self._db.run(run)

    async def letters(
        self, *, subscription: str | None = None, limit: int = 100, include_replayed: bool = False
    ) -> list[DeadLetter]:
        where, params = letters_filter(subscription, include_replayed)
        sql = (
            "SELECT id, subscription, topic, event_id, event_type, attributes, data, attempts,"
            f" reason, error, dead_at, replayed_at FROM dead_letters{where} ORDER BY id LIMIT ?"
        )
        rows = await self._db.run(lambda conn: conn.execute(sql, (*params, limit)).fetchall())
        return [
            DeadLetter(
                id=r[0],
                subscription=r[1],
                topic=r[2],
                event_id=r[3],
                event_type=r[4],
                attributes=_attrs.decode(r[5]),
                payload=bytes(r[6]),
                attempts=r[7],
                reason=r[8],
                error=r[9],
                dead_at=r[10],
                replayed_at=r[11],
            )
            for r in rows
        ]

    async def count(self, subscription: str) -> int:
        row = await self._db.run(
            lambda conn: conn.execute(
                "SELECT COUNT(*) FROM dead_letters WHERE subscription = ? AND replayed_at IS NULL",
                (subscription,),
            ).fetchone()
        )
        return int(row[0])

    async def take(self, ids: Sequence[int]) -> list[DeadLetter]:
        """The live dead letters among ``ids`` (republish them, then :meth:`mark_replayed`)."""
        wanted = set(ids)
        return [d for d in await self.letters(limit=1_000_000) if d.id in wanted]

    async def mark_replayed(self, ids: Sequence[int]) -> None:
        now = time.time()
        params = [(now, i) for i in ids]

        def run(conn: Any) -> None:
            with self._db.transaction(conn):
                conn.executemany("UPDATE dead_letters SET replayed_at = ? WHERE id = ?", params)

        await self._db.run(run)

    async def close(self) -> None:
        await self._db.close()


def letters_filter(subscription: str | None, include_replayed: bool) -> tuple[str, list[str]]:
    """The ``WHERE`` clause (with its leading space, or empty) and parameters that
    select dead letters by subscription and replay state, in a ``dead_letters`` table."""
    where, params = [], []
    if subscription is not None:
        where.append("subscription = ?")
        params.append(subscription)
    if not include_replayed:
        where.append("replayed_at IS NULL")
    return (" WHERE " + " AND ".join(where) if where else ""), params
