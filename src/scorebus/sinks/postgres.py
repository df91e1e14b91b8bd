"""The PostgreSQL results store: ``postgresql://USER@HOST:PORT/DB?table=...``.

Idempotent on ``(scorer, event_id)`` (the primary key; ``ON CONFLICT DO
NOTHING``). A batch is one transaction: ``COPY`` into a per-connection temporary
table, then one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` into the results
table (8-12 % faster than an ``INSERT ... SELECT FROM unnest(arrays)`` at 512
rows; see ``docs/connectors/postgresql.md``). Where the scorer also publishes,
the same statement inserts the outbox rows, joined to the ``RETURNING`` of the
results insert, so an event goes out only with a new result and a redelivery
neither stores nor publishes twice.

URL options (the query string; anything else is passed on to asyncpg/libpq,
e.g. ``sslmode``):

    table            results table, ``[schema.]name`` (default ``scorebus_results``)
    outbox           outbox table, ``[schema.]name`` (default ``scorebus_outbox``)
    pool_size        most connections in the pool (default 4)
    connect_timeout  seconds to wait for a connection (default 10)

The URL's parsing, the SQL and the error translation live beside this module in
:mod:`.postgres_url`, :mod:`.postgres_sql` and :mod:`.postgres_errors`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import msgspec

from ..errors import ConfigError
from ..events import Event
from .base import OutboxEvent, ScoreResult, StoredResult
from .postgres_errors import edge
from .postgres_sql import STAGE, create_stage, statements
from .postgres_url import parse_url

_event_encoder = msgspec.msgpack.Encoder()
_event_decoder = msgspec.msgpack.Decoder(Event)
_output_decoder = msgspec.json.Decoder()


class PostgresResultStore:
    """Results and outbox in two PostgreSQL tables, created if missing.

    Args:
        url: ``postgresql://USER[:PASSWORD]@HOST[:PORT]/DB[?table=...&outbox=...]``;
            see the module docstring for every option.

    Raises:
        ConfigError: an option or table name is not valid.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._opts = opts = parse_url(url)
        self._dsn = opts.dsn
        self.server = opts.server
        self.user = opts.user
        self.results_table = opts.results_table
        self.outbox_table = opts.outbox_table
        self.pool_size = opts.pool_size
        self.connect_timeout = opts.connect_timeout
        self._pool: asyncpg.Pool | None = None
        self._sql = statements(self.results_table, self.outbox_table)

    async def open(self) -> None:
        """Connect and create the tables if missing.

        Raises:
            ConfigError: bad credentials, a missing database, or no privilege to
                create the tables (the message names the server and what to check).
            SinkUnavailable: the server cannot be reached.
        """
        if self._pool is not None:
            return
        with edge(self._opts, "cannot connect"):
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self.pool_size,
                timeout=self.connect_timeout,
                server_settings={"application_name": "scorebus"},
                init=create_stage,
            )
        try:
            with edge(self._opts, "cannot create the tables"):
                async with pool.acquire() as conn, conn.transaction():
                    # CREATE ... IF NOT EXISTS needs CREATE on the schema even when the
                    # tables exist: a user who was only granted the tables skips it.
                    missing = await conn.fetchval(
                        "SELECT to_regclass($1) IS NULL OR to_regclass($2) IS NULL",
                        self.results_table,
                        self.outbox_table,
                    )
                    if missing:
                        # Two workers starting together must not race on CREATE TABLE.
                        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('scorebus-ddl'))")
                        await conn.execute(self._sql["ddl"])
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def _open_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise ConfigError(f"store at {self.server} is not open: call open() first")
        return self._pool

    async def _run(self, method: str, sql: str, *args: Any) -> Any:
        pool = self._open_pool()
        with edge(self._opts, "query failed"):
            return await getattr(pool, method)(sql, *args)

    async def write(
        self, results: Sequence[ScoreResult], outbox: Sequence[OutboxEvent] = ()
    ) -> int:
        """Commit new results, and the outbox events of the new ones, in one transaction.

        Returns:
            How many result rows were new.

        Raises:
            SinkUnavailable: the connection was lost or the server is overloaded;
                nothing of this batch is committed unless the commit itself went
                through, in which case the retry writes nothing twice.
        """
        if not results:
            return 0
        rows: list[tuple[Any, ...]] = []
        keys: set[tuple[str, str]] = set()
        for r in results:
            # The first copy of a key wins, as with INSERT OR IGNORE.
            if (r.scorer, r.event_id) in keys:
                continue
            keys.add((r.scorer, r.event_id))
            rows.append(
                (
                    r.scorer,
                    r.event_id,
                    r.model,
                    r.model_version,
                    r.output.decode(),
                    r.event_time,
                    r.scored_at,
                    r.latency_ms,
                    r.service_ms,
                )
            )
        # One row per (scorer, key, event id): a batch holding two copies of an
        # event (a redelivery next to its first delivery) still publishes it once.
        # Encoding first means an unencodable event fails before anything is sent.
        seen: dict[tuple[str, str, str], OutboxEvent] = {}
        for item in outbox:
            seen.setdefault((item.scorer, item.key, item.event.id), item)
        ob: list[list[Any]] = [[], [], [], []]
        for item in seen.values():
            ob[0].append(item.topic)
            ob[1].append(item.scorer)
            ob[2].append(item.key)
            ob[3].append(_event_encoder.encode(item.event))
        pool = self._open_pool()
        with edge(self._opts, "write failed"):
            async with pool.acquire() as conn, conn.transaction():
                await conn.copy_records_to_table(STAGE, records=rows, schema_name="pg_temp")
                if not seen:
                    status = await conn.execute(self._sql["insert"])
                    return int(status.rsplit(" ", 1)[-1])
                return int(await conn.fetchval(self._sql["insert_outbox"], *ob, time.time()))

    async def results(self, *, scorer: str | None = None, limit: int = 20) -> list[StoredResult]:
        """The newest results, of one scorer or all."""
        if scorer:
            rows = await self._run("fetch", self._sql["results_of"], scorer, limit)
        else:
            rows = await self._run("fetch", self._sql["results"], limit)
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
        """Result rows per scorer."""
        rows = await self._run("fetch", self._sql["counts"])
        return {r[0]: int(r[1]) for r in rows}

    async def event_ids(self, scorer: str) -> list[str]:
        """Every event id with a result for ``scorer`` (for audits and tests)."""
        rows = await self._run("fetch", self._sql["event_ids"], scorer)
        return [r[0] for r in rows]

    async def audit(self, scorer: str, id_prefix: str = "") -> tuple[int, int]:
        """``(rows, distinct event ids)`` of a scorer's results whose ids start with a prefix."""
        row = await self._run("fetchrow", self._sql["audit"], scorer, id_prefix)
        return int(row[0]), int(row[1])

    async def latencies(
        self, scorer: str, *, id_prefix: str = "", since: float = 0.0
    ) -> list[tuple[float, float, float]]:
        """``(latency_ms, service_ms, scored_at)`` of results, for percentiles and rates."""
        rows = await self._run("fetch", self._sql["latencies"], scorer, id_prefix, since)
        return [(r[0], r[1], r[2]) for r in rows]

    async def outbox_pending(self, limit: int = 500) -> list[tuple[int, OutboxEvent]]:
        """The oldest outbox rows, in commit order, with their row ids."""
        rows = await self._run("fetch", self._sql["outbox_pending"], limit)
        return [
            (
                int(r[0]),
                OutboxEvent(topic=r[1], scorer=r[2], key=r[3], event=_event_decoder.decode(r[4])),
            )
            for r in rows
        ]

    async def outbox_done(self, ids: Sequence[int]) -> None:
        """Forget outbox rows that the broker accepted."""
        if ids:
            await self._run("execute", self._sql["outbox_done"], list(ids))

    @asynccontextmanager
    async def outbox_batch(self, limit: int = 500) -> AsyncIterator[list[tuple[int, OutboxEvent]]]:
        """Lock up to ``limit`` rows (``FOR UPDATE SKIP LOCKED``) for the block's length.

        The transaction stays open while the caller publishes: other relays skip
        the locked rows, a clean exit deletes them, an error rolls back.
        """
        pool = self._open_pool()
        with edge(self._opts, "relaying the outbox failed"):
            async with pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(self._sql["outbox_claim"], limit)
                items = [
                    (
                        int(r[0]),
                        OutboxEvent(
                            topic=r[1], scorer=r[2], key=r[3], event=_event_decoder.decode(r[4])
                        ),
                    )
                    for r in rows
                ]
                yield items
                if items:
                    await conn.execute(self._sql["outbox_done"], [i for i, _ in items])

    async def outbox_size(self) -> int:
        return int(await self._run("fetchval", self._sql["outbox_size"]))
