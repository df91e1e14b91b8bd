"""What a host keeps beside Mosquitto: ``state.db`` in the ``state`` folder.

SQLite, shared by the host's processes (see :mod:`._parking` for why):

- ``parked``: events waiting on this host, in a small queue of their own:
  published while a subscription had no live member (or before any
  subscription existed, ``subscription IS NULL``), taken from an idle session,
  handed off by a member that stopped, or replayed. The members on this host
  lease them like the embedded broker does (``visible_at``, ``leases``), so no
  burst of them ever goes through Mosquitto's per-client limits.
- ``leases``: how many times this host leased an MQTT message that is not
  settled yet, so a crash does not reset its attempt count.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from ..._sqlite import SqliteThread
from ...events import Event
from ._slots import host_lock

_SCHEMA = """
CREATE TABLE IF NOT EXISTS parked (
    seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, subscription TEXT,
    attempts INTEGER NOT NULL, event BLOB NOT NULL, at REAL NOT NULL,
    visible_at REAL NOT NULL DEFAULT 0, leases INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS parked_ready ON parked (subscription, visible_at);
CREATE TABLE IF NOT EXISTS leases (
    subscription TEXT NOT NULL, event_id TEXT NOT NULL, attempts INTEGER NOT NULL,
    at REAL NOT NULL, PRIMARY KEY (subscription, event_id)) WITHOUT ROWID;
"""
_LEASE_TTL_S = 7 * 86400
_pack = msgspec.msgpack.Encoder().encode
_unpack = msgspec.msgpack.Decoder(Event).decode

Parked = tuple[int, str, int, Event]  # seq, topic, attempts before, event
Leased = tuple[int, str, int, int, Event]  # seq, topic, attempts before, lease number, event


class LocalState:
    """The host's ``state.db``; see the module docstring."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._db = SqliteThread(folder / "state.db", _SCHEMA)
        self._purged = False

    async def close(self) -> None:
        await self._db.close()

    # ------------------------------------------------------------ parked events

    async def park(self, rows: Sequence[tuple[str, str | None, int, Event]]) -> None:
        now = time.time()
        params = [(topic, sub, attempts, _pack(e), now) for topic, sub, attempts, e in rows]

        def run(conn: Any) -> None:
            with self._db.transaction(conn):
                conn.executemany(
                    "INSERT INTO parked (topic, subscription, attempts, event, at)"
                    " VALUES (?,?,?,?,?)",
                    params,
                )

        await self._db.run(run)

    async def adopt(
        self, first_of: Callable[[str], str | None], only: str | None = None
    ) -> set[str]:
        """Give each unclaimed event to the first subscription of its topic (or ``only`` it).

        Returns the subscriptions that got some.
        """

        def run(conn: Any) -> set[str]:
            got: set[str] = set()
            with self._db.transaction(conn):
                for (topic,) in conn.execute(
                    "SELECT DISTINCT topic FROM parked WHERE subscription IS NULL"
                ).fetchall():
                    owner = first_of(topic)
                    if owner is not None and only in (None, owner):
                        conn.execute(
                            "UPDATE parked SET subscription = ? WHERE subscription IS NULL"
                            " AND topic = ?",
                            (owner, topic),
                        )
                        got.add(owner)
            return got

        return await self._db.run(run)

    async def lease_parked(self, subscription: str, limit: int, lease_s: float) -> list[Leased]:
        """Lease up to ``limit`` visible parked events of ``subscription``, oldest first."""
        now = time.time()

        def run(conn: Any) -> list[Leased]:
            with self._db.transaction(conn):
                rows = conn.execute(
                    "UPDATE parked SET visible_at = ?, leases = leases + 1 WHERE seq IN ("
                    " SELECT seq FROM parked WHERE subscription = ? AND visible_at <= ?"
                    " ORDER BY seq LIMIT ?) RETURNING seq, topic, attempts, leases, event",
                    (now + lease_s, subscription, now, limit),
                ).fetchall()
            rows.sort(key=lambda r: r[0])  # RETURNING order is unspecified
            return [(seq, t, a, n, _unpack(blob)) for seq, t, a, n, blob in rows]

        return await self._db.run(run)

    async def settle_parked(self, handles: Sequence[tuple[int, int]]) -> int:
        """Delete the parked events still leased as ``(seq, lease number)``; how many."""

        def run(conn: Any) -> int:
            with self._db.transaction(conn):
                return sum(
                    conn.execute("DELETE FROM parked WHERE seq = ? AND leases = ?", h).rowcount
                    for h in handles
                )

        return await self._db.run(run)

    async def delay_parked(self, handles: Sequence[tuple[int, int]], at: float) -> None:
        """Move the lease end of still-leased parked events (nack, extend)."""
        params = [(at, seq, n) for seq, n in handles]

        def run(conn: Any) -> None:
            with self._db.transaction(conn):
                conn.executemany(
                    "UPDATE parked SET visible_at = ? WHERE seq = ? AND leases = ?", params
                )

        await self._db.run(run)

    async def still_leased(self, handles: Sequence[tuple[int, int]]) -> set[int]:
        """The ``seq`` of those parked events still leased as ``(seq, lease number)``."""

        def run(conn: Any) -> set[int]:
            return {
                seq
                for seq, n in handles
                if conn.execute(
                    "SELECT 1 FROM parked WHERE seq = ? AND leases = ?", (seq, n)
                ).fetchone()
            }

        return await self._db.run(run)

    def flushing(self) -> contextlib.AbstractAsyncContextManager[None]:
        """One process at a time republishes parked events (so none goes twice)."""
        return host_lock(self.folder / "parked.lock")

    async def take_parked(self, subscription: str, limit: int = 1000) -> list[Parked]:
        """Visible parked events of ``subscription``, to republish (then :meth:`unpark`)."""
        rows = await self._db.run(
            lambda conn: conn.execute(
                "SELECT seq, topic, attempts + leases, event FROM parked WHERE subscription = ?"
                " AND visible_at <= ? ORDER BY seq LIMIT ?",
                (subscription, time.time(), limit),
            ).fetchall()
        )
        return [(seq, topic, attempts, _unpack(blob)) for seq, topic, attempts, blob in rows]

    async def unpark(self, seqs: Sequence[int]) -> None:
        def run(conn: Any) -> None:
            with self._db.transaction(conn):
                conn.executemany("DELETE FROM parked WHERE seq = ?", [(s,) for s in seqs])

        await self._db.run(run)

    async def parked_counts(self) -> dict[tuple[str | None, str], tuple[int, int]]:
        """(subscription or None, topic) -> (visible, leased) parked events."""
        now = time.time()
        rows = await self._db.run(
            lambda conn: conn.execute(
                "SELECT subscription, topic, SUM(visible_at <= ?), SUM(visible_at > ?)"
                " FROM parked GROUP BY subscription, topic",
                (now, now),
            ).fetchall()
        )
        return {(sub, topic): (ready, leased) for sub, topic, ready, leased in rows}

    async def purge(self) -> None:
        def run(conn: Any) -> None:
            with self._db.transaction(conn):
                conn.execute("DELETE FROM parked")
                conn.execute("DELETE FROM leases")

        await self._db.run(run)

    # ------------------------------------------------------------ lease counts

    async def lease(self, subscription: str, items: Sequence[tuple[str, int]]) -> list[int]:
        """Count one more lease of each ``(event id, attempts before)``; the new attempt numbers."""
        now = time.time()

        def run(conn: Any) -> list[int]:
            with self._db.transaction(conn):
                if not self._purged:
                    self._purged = True
                    conn.execute("DELETE FROM leases WHERE at < ?", (now - _LEASE_TTL_S,))
                return [
                    conn.execute(
                        "INSERT INTO leases (subscription, event_id, attempts, at)"
                        " VALUES (?, ?, ?, ?) ON CONFLICT (subscription, event_id) DO UPDATE"
                        " SET attempts = MAX(leases.attempts + 1, excluded.attempts), at = excluded.at"
                        " RETURNING attempts",
                        (subscription, event_id, before + 1, now),
                    ).fetchone()[0]
                    for event_id, before in items
                ]

        return await self._db.run(run)

    async def leased(self, subscription: str, event_ids: Sequence[str]) -> dict[str, int]:
        """Leases this host counted for ``event_ids`` (those never leased are absent)."""
        ids = list(event_ids)

        def run(conn: Any) -> dict[str, int]:
            out: dict[str, int] = {}
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                out.update(
                    conn.execute(
                        "SELECT event_id, attempts FROM leases WHERE subscription = ?"
                        f" AND event_id IN ({','.join('?' * len(chunk))})",
                        (subscription, *chunk),
                    ).fetchall()
                )
            return out

        return await self._db.run(run)

    async def settle(self, subscription: str, event_ids: Sequence[str]) -> None:
        params = [(subscription, e) for e in event_ids]

        def run(conn: Any) -> None:
            with self._db.transaction(conn):
                conn.executemany(
                    "DELETE FROM leases WHERE subscription = ? AND event_id = ?", params
                )

        await self._db.run(run)
