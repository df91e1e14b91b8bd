"""A subscription on the embedded broker: leases, acks, nacks and dead letters.

A pull takes the per-row messages that are due first (redeliveries, nacks),
then fresh ones past the cursor under one range lease (see ``schema.py``). An
ack deletes rows, but only the current holder's: the handle carries the
``attempts`` the row had when leased, and a lease that ran out is *reclaimed*
by the next pull, which turns its rows into per-row leases with
``attempts = 1`` before handing them out again, so the old holder's late ack
no longer matches. A nack or a dead letter of a range-leased row does the
same to that row alone.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ...events import Event
from ..base import Delivery
from .schema import COLS, ext_decoder

if TYPE_CHECKING:
    from .broker import SqliteBroker

# (seq, attempts when leased, range lease id or None, position in that lease's pull)
Handle = tuple[int, int, int | None, int]
Rows = list[tuple[Any, ...]]


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
            retried, fresh, lease, deadline = await self._db.run(self._lease, max_messages)
            if retried or fresh or time.monotonic() >= give_up:
                out = [self._delivery(row, deadline, None, 0) for row in retried]
                out += [self._delivery(row, deadline, lease, i) for i, row in enumerate(fresh)]
                if retried and fresh:
                    out.sort(key=lambda d: d.handle[0])  # publish order
                return out
            # Another process may publish at any moment; poll with a short, growing pause
            # (at most 2 ms: an idle poll is one indexed read, and the pause is latency).
            await self._broker._wait_for_publish(min(pause, max(0.0, give_up - time.monotonic())))
            pause = min(pause * 2, 0.002)

    def _lease(self, conn: sqlite3.Connection, max_messages: int) -> tuple[Rows, Rows, int, float]:
        """Due per-row messages, fresh ones under one range lease, its id, the deadline."""
        now = time.time()
        deadline = now + self.ack_deadline_s
        # Taking the write lock costs even when nothing is due: a read first keeps
        # idle and polling consumers off it.
        if not self._anything_due(conn, now):
            return [], [], 0, deadline
        with self._db.transaction(conn):
            self._reclaim(conn, now)
            retried = conn.execute(
                "UPDATE messages SET visible_at = ?, attempts = attempts + 1 WHERE seq IN ("
                " SELECT seq FROM messages WHERE subscription = ? AND attempts > 0"
                " AND visible_at <= ? ORDER BY visible_at LIMIT ?)"
                f" RETURNING {COLS}",
                (deadline, self.name, now, max_messages),
            ).fetchall()
            retried.sort(key=lambda r: r[0])  # RETURNING order is unspecified
            fresh: Rows = []
            lease = 0
            if len(retried) < max_messages:
                fresh, lease = self._lease_fresh(conn, max_messages - len(retried), deadline)
        return retried, fresh, lease, deadline

    def _anything_due(self, conn: sqlite3.Connection, now: float) -> bool:
        name = self.name
        return bool(
            conn.execute(
                "SELECT EXISTS (SELECT 1 FROM messages WHERE subscription = ? AND attempts > 0"
                "  AND visible_at <= ?)"
                " OR EXISTS (SELECT 1 FROM messages WHERE subscription = ? AND attempts = 0"
                "  AND seq > (SELECT cursor FROM subscriptions WHERE name = ?))"
                " OR EXISTS (SELECT 1 FROM leases WHERE subscription = ? AND deadline <= ?)",
                (name, now, name, name, name, now),
            ).fetchone()[0]
        )

    def _lease_fresh(
        self, conn: sqlite3.Connection, limit: int, deadline: float
    ) -> tuple[Rows, int]:
        """Lease up to ``limit`` fresh messages with one range lease; move the cursor."""
        (cursor,) = conn.execute(
            "SELECT cursor FROM subscriptions WHERE name = ?", (self.name,)
        ).fetchone()
        rows = conn.execute(
            f"SELECT {COLS} FROM messages WHERE subscription = ? AND seq > ? AND attempts = 0"
            " ORDER BY seq LIMIT ?",
            (self.name, cursor, limit),
        ).fetchall()
        if not rows:
            return [], 0
        lo, hi = rows[0][0], rows[-1][0]
        lease = conn.execute(
            "INSERT INTO leases (subscription, lo, hi, deadline) VALUES (?, ?, ?, ?)",
            (self.name, lo, hi, deadline),
        ).lastrowid
        assert lease is not None  # an INSERT into a rowid table always has one
        conn.execute("UPDATE subscriptions SET cursor = ? WHERE name = ?", (hi, self.name))
        return rows, lease

    def _reclaim(self, conn: sqlite3.Connection, now: float) -> None:
        """Turn the rows of range leases that ran out into due per-row messages."""
        expired = conn.execute(
            "SELECT id, lo, hi FROM leases WHERE subscription = ? AND deadline <= ?",
            (self.name, now),
        ).fetchall()
        for lease, lo, hi in expired:
            conn.execute(
                "UPDATE messages SET attempts = 1, visible_at = ?"
                " WHERE subscription = ? AND seq BETWEEN ? AND ? AND attempts = 0",
                (now, self.name, lo, hi),
            )
            conn.execute("DELETE FROM leases WHERE id = ?", (lease,))

    def _forget(self, conn: sqlite3.Connection, handles: Iterable[Handle]) -> None:
        """Drop the range leases none of whose rows are still held under them."""
        for lease in {h[2] for h in handles if h[2] is not None}:
            conn.execute(
                "DELETE FROM leases WHERE id = ? AND NOT EXISTS (SELECT 1 FROM messages"
                " WHERE subscription = ? AND seq BETWEEN leases.lo AND leases.hi"
                " AND attempts = 0)",
                (lease, self.name),
            )

    def _delivery(
        self, row: tuple[Any, ...], deadline: float, lease: int | None, i: int
    ) -> Delivery:
        seq, event_id, type_, source, time_, subject, ctype, ext, data, attempts = row
        event = Event(
            id=event_id,
            type=type_,
            source=source,
            time=time_,
            data=data,
            datacontenttype=ctype,
            subject=subject,
            extensions=ext_decoder.decode(ext) if ext else {},
        )
        return Delivery(
            event,
            attempt=attempts or 1,
            handle=(seq, attempts, lease, i),
            subscription=self,
            size=len(data),
            deadline=deadline,
        )

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        if deliveries:
            await self._db.run(self._ack, [d.handle for d in deliveries])

    def _ack(self, conn: sqlite3.Connection, handles: list[Handle]) -> None:
        with self._db.transaction(conn):
            # Only the current lease holder's ack counts: a message whose lease ran out
            # and was handed to someone else is settled by that consumer.
            singles, runs = _runs(handles)
            acked = 0
            for lo, hi in runs:
                # Every row of the lease between lo and hi is in this ack: one range
                # delete (rows nacked or reclaimed meanwhile have attempts >= 1).
                acked += conn.execute(
                    "DELETE FROM messages WHERE subscription = ? AND seq BETWEEN ? AND ?"
                    " AND attempts = 0",
                    (self.name, lo, hi),
                ).rowcount
            if singles:
                acked += conn.executemany(
                    "DELETE FROM messages WHERE seq = ? AND attempts = ?", singles
                ).rowcount
            conn.execute(
                "UPDATE subscriptions SET acked = acked + ? WHERE name = ?", (acked, self.name)
            )
            self._forget(conn, handles)

    async def nack(self, deliveries: Sequence[Delivery], delay_s: float = 0.0) -> None:
        if not deliveries:
            return
        at = time.time() + max(0.0, delay_s)
        handles = [d.handle for d in deliveries]

        def run(conn: sqlite3.Connection) -> None:
            with self._db.transaction(conn):
                # A range-leased row leaves its lease: it becomes a per-row one
                # (its one delivery counted), due at ``at``.
                conn.executemany(
                    "UPDATE messages SET visible_at = ?, attempts = MAX(attempts, 1)"
                    " WHERE seq = ? AND attempts = ?",
                    [(at, *h[:2]) for h in handles],
                )
                self._forget(conn, handles)

        await self._db.run(run)

    async def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        if not deliveries:
            return
        deadline = time.time() + seconds
        handles = [d.handle for d in deliveries]

        def run(conn: sqlite3.Connection) -> None:
            with self._db.transaction(conn):
                conn.executemany(
                    "UPDATE messages SET visible_at = ? WHERE seq = ? AND attempts = ?",
                    [(deadline, *h[:2]) for h in handles if h[2] is None],
                )
                # Every row still under a range lease is held by this consumer.
                conn.executemany(
                    "UPDATE leases SET deadline = ? WHERE id = ?",
                    [(deadline, lease) for lease in {h[2] for h in handles} if lease is not None],
                )

        await self._db.run(run)
        for d in deliveries:
            d.deadline = deadline

    async def dead_letter(self, items: Sequence[tuple[Delivery, str, str]]) -> None:
        if not items:
            return
        now = time.time()
        params = [(reason, error[:4000], now, *d.handle[:2]) for d, reason, error in items]
        handles = [d.handle for d, _, _ in items]

        def run(conn: sqlite3.Connection) -> None:
            with self._db.transaction(conn):
                for reason, error, at, seq, attempts in params:
                    cur = conn.execute(
                        "INSERT INTO dead_letters (subscription, topic, event_id, type, source,"
                        " time, subject, datacontenttype, ext, data, attempts, reason, error,"
                        " dead_at) SELECT subscription, topic, event_id, type, source, time,"
                        " subject, datacontenttype, ext, data, MAX(attempts, 1), ?, ?, ?"
                        " FROM messages WHERE seq = ? AND attempts = ?",
                        (reason, error, at, seq, attempts),
                    )
                    if cur.rowcount:
                        conn.execute("DELETE FROM messages WHERE seq = ?", (seq,))
                self._forget(conn, handles)

        await self._db.run(run)


def _runs(handles: list[Handle]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Split acks into per-row ``(seq, attempts)`` and ``(first seq, last seq)`` runs.

    A run is all the acks of one range lease when they are consecutive in that
    lease's pull (a whole batch, usually); anything else is acked row by row.
    """
    singles: list[tuple[int, int]] = []
    by_lease: dict[int, list[tuple[int, int]]] = {}
    for seq, attempts, lease, i in handles:
        if lease is None:
            singles.append((seq, attempts))
        else:
            by_lease.setdefault(lease, []).append((i, seq))
    runs = []
    for members in by_lease.values():
        members.sort()
        # Consecutive: as many distinct positions as the span holds ([0, 0, 2] is not).
        if members[-1][0] - members[0][0] + 1 == len(members) == len(set(members)):
            runs.append((members[0][1], members[-1][1]))
        else:
            singles += [(seq, 0) for _, seq in members]
    return singles, runs
