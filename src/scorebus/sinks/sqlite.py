"""The SQLite results store: the default sink, ``sqlite:///.scorebus/scores.db``.

Idempotent on ``(scorer, event_id)`` (the primary key; ``INSERT OR IGNORE``).
Outgoing events for a scorer that also publishes are written to the ``outbox``
table in the same transaction as their result, and only when the result row is
new, so a redelivered event neither stores nor publishes twice.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec

from .._sqlite import SqliteThread, path_from_url
from ..events import Event
from .base import OutboxEvent, ScoreResult, StoredResult

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    scorer TEXT NOT NULL, event_id TEXT NOT NULL, model TEXT NOT NULL,
    model_version TEXT NOT NULL, output BLOB NOT NULL, event_time REAL NOT NULL,
    scored_at REAL NOT NULL, latency_ms REAL NOT NULL, service_ms REAL NOT NULL,
    PRIMARY KEY (scorer, event_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY, topic TEXT NOT NULL, scorer TEXT NOT NULL, key TEXT NOT NULL,
    event BLOB NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS outbox_claims (id INTEGER PRIMARY KEY, until REAL NOT NULL);
"""

# A relay that died holding a claim releases it after this long.
OUTBOX_CLAIM_S = 30.0

_event_encoder = msgspec.msgpack.Encoder()
_event_decoder = msgspec.msgpack.Decoder(Event)
_output_decoder = msgspec.json.Decoder()


class SqliteResultStore:
    """Results and outbox in one SQLite file.

    Args:
        url: ``sqlite:///path/to/scores.db``.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = path_from_url(url)
        self._db = SqliteThread(self.path, _SCHEMA)

    async def open(self) -> None:
        await self._db.run(lambda conn: None)

    async def close(self) -> None:
        await self._db.close()

    async def write(
        self, results: Sequence[ScoreResult], outbox: Sequence[OutboxEvent] = ()
    ) -> int:
        if not results:
            return 0
        rows = [
            (
                r.scorer,
                r.event_id,
                r.model,
                r.model_version,
                r.output,
                r.event_time,
                r.scored_at,
                r.latency_ms,
                r.service_ms,
            )
            for r in results
        ]
        return await self._db.run(self._write, rows, list(outbox))

    def _write(self, conn: Any, rows: list[tuple[Any, ...]], outbox: list[OutboxEvent]) -> int:
        insert = (
            "INSERT OR IGNORE INTO results (scorer, event_id, model, model_version, output,"
            " event_time, scored_at, latency_ms, service_ms) VALUES (?,?,?,?,?,?,?,?,?)"
        )
        with self._db.transaction(conn):
            if not outbox:
                before = conn.total_changes
                conn.executemany(insert, rows)
                return int(conn.total_changes - before)
            # With an outbox, each event goes out only if its result row is new.
            # Keyed by event id too: a batch holding two copies of one event (a
            # redelivery, a publisher's retry) must still publish it once.
            by_key: dict[tuple[str, str], dict[str, OutboxEvent]] = {}
            for item in outbox:
                by_key.setdefault((item.scorer, item.key), {})[item.event.id] = item
            now = time.time()
            written = 0
            for row in rows:
                if conn.execute(insert, row).rowcount:
                    written += 1
                    for item in by_key.pop((row[0], row[1]), {}).values():
                        conn.execute(
                            "INSERT INTO outbox (topic, scorer, key, event, created_at)"
                            " VALUES (?,?,?,?,?)",
                            (
                                item.topic,
                                item.scorer,
                                item.key,
                                _event_encoder.encode(item.event),
                                now,
                            ),
                        )
            return written

    async def results(self, *, scorer: str | None = None, limit: int = 20) -> list[StoredResult]:
        sql = (
            "SELECT scorer, event_id, model, model_version, output, scored_at, latency_ms,"
            " service_ms FROM results"
            + (" WHERE scorer = ?" if scorer else "")
            + " ORDER BY scored_at DESC LIMIT ?"
        )
        params = (scorer, limit) if scorer else (limit,)
        rows = await self._db.run(lambda conn: conn.execute(sql, params).fetchall())
        return [
            StoredResult(
                scorer=r[0],
                event_id=r[1],
                model=r[2],
                model_version=r[3],
                output=_output_decoder.decode(r[4]),
                scored_at=r[5],
                latency_ms=r[6],
                service_ms=r[7],
            )
            for r in rows
        ]

    async def counts(self) -> dict[str, int]:
        rows = await self._db.run(
            lambda conn: conn.execute(
                "SELECT scorer, COUNT(*) FROM results GROUP BY scorer"
            ).fetchall()
        )
        return {scorer: n for scorer, n in rows}

    async def event_ids(self, scorer: str) -> list[str]:
        """Every event id with a result for ``scorer`` (for audits and tests)."""
        rows = await self._db.run(
            lambda conn: conn.execute(
                "SELECT event_id FROM results WHERE scorer = ?", (scorer,)
            ).fetchall()
        )
        return [r[0] for r in rows]

    async def audit(self, scorer: str, id_prefix: str = "") -> tuple[int, int]:
        """``(rows, distinct event ids)`` of a scorer's results whose ids start with a prefix."""
        row = await self._db.run(
            lambda conn: conn.execute(
                "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM results"
                " WHERE scorer = ? AND event_id >= ? AND event_id < ?",
                (scorer, id_prefix, id_prefix + "\uffff"),
            ).fetchone()
        )
        return int(row[0]), int(row[1])

    async def latencies(
        self, scorer: str, *, id_prefix: str = "", since: float = 0.0
    ) -> list[tuple[float, float, float]]:
        """``(latency_ms, service_ms, scored_at)`` of results, for percentiles and rates."""
        return await self._db.run(
            lambda conn: conn.execute(
                "SELECT latency_ms, service_ms, scored_at FROM results WHERE scorer = ?"
                " AND event_id >= ? AND event_id < ? AND scored_at >= ?",
                (scorer, id_prefix, id_prefix + "\uffff", since),
            ).fetchall()
        )

    async def outbox_pending(self, limit: int = 500) -> list[tuple[int, OutboxEvent]]:
        rows = await self._db.run(
            lambda conn: conn.execute(
                "SELECT id, topic, scorer, key, event FROM outbox ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        )
        return [
            (
                r[0],
                OutboxEvent(topic=r[1], scorer=r[2], key=r[3], event=_event_decoder.decode(r[4])),
            )
            for r in rows
        ]

    async def outbox_done(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        params = [(i,) for i in ids]

        def run(conn: Any) -> None:
            with self._db.transaction(conn):
                conn.executemany("DELETE FROM outbox WHERE id = ?", params)
                conn.executemany("DELETE FROM outbox_claims WHERE id = ?", params)

        await self._db.run(run)

    @contextlib.asynccontextmanager
    async def outbox_batch(self, limit: int = 500) -> AsyncIterator[list[tuple[int, OutboxEvent]]]:
        """Claim unclaimed (or expired) outbox rows in one write transaction."""

        def claim(conn: Any) -> list[Any]:
            now = time.time()
            with self._db.transaction(conn):
                rows = conn.execute(
                    "SELECT o.id, o.topic, o.scorer, o.key, o.event FROM outbox o"
                    " LEFT JOIN outbox_claims c ON c.id = o.id"
                    " WHERE c.until IS NULL OR c.until <= ? ORDER BY o.id LIMIT ?",
                    (now, limit),
                ).fetchall()
                conn.executemany(
                    "INSERT OR REPLACE INTO outbox_claims (id, until) VALUES (?, ?)",
                    [(r[0], now + OUTBOX_CLAIM_S) for r in rows],
                )
            return list(rows)

        rows = await self._db.run(claim)
        items = [
            (
                r[0],
                OutboxEvent(topic=r[1], scorer=r[2], key=r[3], event=_event_decoder.decode(r[4])),
            )
            for r in rows
        ]
        try:
            yield items
        except BaseException:
            if items:
                params = [(i,) for i, _ in items]

                def release(conn: Any) -> None:
                    with self._db.transaction(conn):
                        conn.executemany("DELETE FROM outbox_claims WHERE id = ?", params)

                with contextlib.suppress(Exception):  # the claim expires by itself
                    await self._db.run(release)
            raise
        await self.outbox_done([i for i, _ in items])

    async def outbox_size(self) -> int:
        row = await self._db.run(
            lambda conn: conn.execute("SELECT COUNT(*) FROM outbox").fetchone()
        )
        return int(row[0])
