"""The embedded broker's tables, their migration, and row <-> object helpers.

A message row is in one of three states, and only the exceptional ones cost a
write per row:

- *fresh*: ``attempts = 0`` and ``seq`` past its subscription's ``cursor``;
- *range-leased*: ``attempts = 0``, ``seq`` at or before the cursor, inside one
  row of ``leases`` (``lo``..``hi``, ``deadline``): a pull of 512 fresh messages
  writes one lease row and moves the cursor, instead of updating 512 rows;
- *per-row* (redelivered, nacked, or from a lease that ran out):
  ``attempts >= 1`` and its own ``visible_at``, found through the partial index
  ``messages_retry``, which fresh and range-leased rows stay out of.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from ...events.codec import format_time
from ..base import DeadLetter

SCHEMA = """
CREATE TABLE IF NOT EXISTS subscriptions (
    name TEXT PRIMARY KEY, topic TEXT NOT NULL, ack_deadline_s REAL NOT NULL,
    created_at REAL NOT NULL, acked INTEGER NOT NULL DEFAULT 0,
    cursor INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY, subscription TEXT, topic TEXT NOT NULL,
    event_id TEXT NOT NULL, type TEXT NOT NULL, source TEXT NOT NULL, time REAL NOT NULL,
    subject TEXT, datacontenttype TEXT NOT NULL, ext BLOB, data BLOB NOT NULL,
    visible_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS messages_sub ON messages (subscription);
CREATE INDEX IF NOT EXISTS messages_retry ON messages (subscription, visible_at)
    WHERE attempts > 0;
CREATE INDEX IF NOT EXISTS messages_unclaimed ON messages (topic) WHERE subscription IS NULL;
DROP INDEX IF EXISTS messages_ready;
CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY, subscription TEXT NOT NULL,
    lo INTEGER NOT NULL, hi INTEGER NOT NULL, deadline REAL NOT NULL);
CREATE INDEX IF NOT EXISTS leases_due ON leases (subscription, deadline);
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

COLS = "seq, event_id, type, source, time, subject, datacontenttype, ext, data, attempts"
ext_decoder = msgspec.json.Decoder(dict[str, str])
ext_encoder = msgspec.json.Encoder()


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a bus.db written by an earlier version up to :data:`SCHEMA`.

    Runs before the schema, in the same transaction. Before range leases,
    every delivered row carried ``attempts >= 1``, so old in-flight rows read
    as per-row leases and old undelivered rows as fresh: nothing to rewrite.
    """
    columns = {r[1] for r in conn.execute("PRAGMA table_info(subscriptions)")}
    if columns and "cursor" not in columns:
        conn.execute("ALTER TABLE subscriptions ADD COLUMN cursor INTEGER NOT NULL DEFAULT 0")


def next_seq(conn: sqlite3.Connection) -> int:
    """The first free ``seq``, past every row and every cursor.

    SQLite reuses the largest rowid once its row is deleted; a reused ``seq``
    at or before a cursor would be taken for range-leased and never delivered.
    """
    (top,) = conn.execute(
        "SELECT MAX(COALESCE((SELECT MAX(seq) FROM messages), 0),"
        " COALESCE((SELECT MAX(cursor) FROM subscriptions), 0))"
    ).fetchone()
    return int(top) + 1


def dead_letter_of(row: tuple[Any, ...]) -> DeadLetter:
    """A ``dead_letters`` row as a :class:`DeadLetter` with its CloudEvents attributes."""
    (id_, sub, topic, event_id, type_, source, time_, subject, ctype, ext, data) = row[:11]
    attempts, reason, error, dead_at, replayed_at = row[11:]
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
        attrs.update(ext_decoder.decode(ext))
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
