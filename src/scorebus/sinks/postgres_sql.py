"""The SQL of the PostgreSQL results store: tables, staging table, statements.

Apart from :mod:`.postgres` so the schema and every statement can be read (and
reviewed against ``docs/connectors/postgresql.md``) in one place, away from the
connection handling. The store builds the statements once per table pair with
:func:`statements` and runs them by name.
"""

from __future__ import annotations

import asyncpg

STAGE = "scorebus_stage"
_COLS = (
    "scorer, event_id, model, model_version, output, event_time, scored_at, latency_ms, service_ms"
)


async def create_stage(conn: asyncpg.Connection) -> None:
    """Create this connection's staging table (the pool's ``init``)."""
    # Each connection stages its batches in its own temporary table; ON COMMIT
    # DELETE ROWS empties it, and a rolled-back COPY leaves nothing behind.
    await conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} ("
        'scorer TEXT COLLATE "C", event_id TEXT COLLATE "C", model TEXT, model_version TEXT,'
        " output JSONB, event_time DOUBLE PRECISION, scored_at DOUBLE PRECISION,"
        " latency_ms DOUBLE PRECISION, service_ms DOUBLE PRECISION) ON COMMIT DELETE ROWS"
    )


def statements(results: str, outbox: str) -> dict[str, str]:
    """Every statement of the store, by name, for these (quoted) tables."""
    # C collation on the key: memcmp comparisons make the primary key cheaper to
    # maintain, and prefix ranges mean what they say whatever the database locale.
    ddl = f"""
CREATE TABLE IF NOT EXISTS {results} (
    scorer TEXT COLLATE "C" NOT NULL, event_id TEXT COLLATE "C" NOT NULL,
    model TEXT NOT NULL, model_version TEXT NOT NULL, output JSONB NOT NULL,
    event_time DOUBLE PRECISION NOT NULL, scored_at DOUBLE PRECISION NOT NULL,
    latency_ms DOUBLE PRECISION NOT NULL, service_ms DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (scorer, event_id));
CREATE TABLE IF NOT EXISTS {outbox} (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, topic TEXT NOT NULL,
    scorer TEXT NOT NULL, key TEXT NOT NULL, event BYTEA NOT NULL,
    created_at DOUBLE PRECISION NOT NULL);
"""
    insert = (
        f"INSERT INTO {results} ({_COLS}) SELECT {_COLS} FROM pg_temp.{STAGE}"
        " ON CONFLICT (scorer, event_id) DO NOTHING"
    )
    # A data-modifying CTE runs to completion even though the outer query only
    # counts: the outbox rows of new results commit atomically with them.
    insert_outbox = f"""
WITH ins AS ({insert} RETURNING scorer, event_id),
ob AS (
    INSERT INTO {outbox} (topic, scorer, key, event, created_at)
    SELECT b.topic, b.scorer, b.key, b.event, $5
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[])
         WITH ORDINALITY AS b(topic, scorer, key, event, ord)
    JOIN ins ON ins.scorer = b.scorer AND ins.event_id = b.key
    ORDER BY b.ord
    RETURNING 1)
SELECT count(*) FROM ins"""
    select = (
        f"SELECT scorer, event_id, model, model_version, output::text, scored_at, latency_ms,"
        f" service_ms FROM {results}"
    )
    prefix = "scorer = $1 AND starts_with(event_id, $2)"
    return {
        "ddl": ddl,
        "insert": insert,
        "insert_outbox": insert_outbox,
        "results": f"{select} ORDER BY scored_at DESC LIMIT $1",
        "results_of": f"{select} WHERE scorer = $1 ORDER BY scored_at DESC LIMIT $2",
        "counts": f"SELECT scorer, count(*) FROM {results} GROUP BY scorer",
        "event_ids": f"SELECT event_id FROM {results} WHERE scorer = $1",
        "audit": f"SELECT count(*), count(DISTINCT event_id) FROM {results} WHERE {prefix}",
        "latencies": f"SELECT latency_ms, service_ms, scored_at FROM {results}"
        f" WHERE {prefix} AND scored_at >= $3",
        "outbox_pending": f"SELECT id, topic, scorer, key, event FROM {outbox} ORDER BY id LIMIT $1",
        "outbox_claim": f"SELECT id, topic, scorer, key, event FROM {outbox}"
        " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        "outbox_done": f"DELETE FROM {outbox} WHERE id = ANY($1::bigint[])",
        "outbox_size": f"SELECT count(*) FROM {outbox}",
    }
