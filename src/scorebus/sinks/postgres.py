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
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import msgspec

from ..errors import ConfigError, SinkUnavailable
from ..events import Event
from .base import OutboxEvent, ScoreResult, StoredResult

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")
_OPTIONS = frozenset({"table", "outbox", "pool_size", "connect_timeout"})
_COLS = (
    "scorer, event_id, model, model_version, output, event_time, scored_at, latency_ms, service_ms"
)
_event_encoder = msgspec.msgpack.Encoder()
_event_decoder = msgspec.msgpack.Decoder(Event)
_output_decoder = msgspec.json.Decoder()

# Failures that may heal by themselves: the connection dropped, the server is
# restarting or out of connections, a serialization conflict. Anything else
# (a bad statement, a constraint) is a bug or a configuration problem.
_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TransactionRollbackError,
)


def _quote(name: str, what: str, url: str) -> str:
    if not _IDENT.match(name):
        raise ConfigError(
            f"bad {what} name {name!r} in {url!r}: use [schema.]name with letters, digits, '_'"
        )
    return ".".join(f'"{part}"' for part in name.split("."))


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
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        opts = {k: v for k, v in query if k in _OPTIONS}
        rest = [(k, v) for k, v in query if k not in _OPTIONS]
        # asyncpg knows postgres:// and postgresql://; our options must not reach it
        # (it would send unknown ones to the server as settings).
        self._dsn = urlunsplit(
            ("postgresql", parts.netloc, parts.path, urlencode(rest), parts.fragment)
        )
        try:
            port = parts.port or 5432
        except ValueError as exc:
            raise ConfigError(f"bad PostgreSQL URL {url!r}: {exc}") from exc
        self.server = f"{parts.hostname or 'localhost'}:{port}{parts.path or '/'}"
        self.user = parts.username or ""
        self.results_table = _quote(opts.get("table", "scorebus_results"), "table", url)
        self.outbox_table = _quote(opts.get("outbox", "scorebus_outbox"), "outbox", url)
        try:
            self.pool_size = int(opts.get("pool_size", "4"))
            self.connect_timeout = float(opts.get("connect_timeout", "10"))
        except ValueError as exc:
            raise ConfigError(f"bad option in {url!r}: {exc}") from exc
        if self.pool_size < 1:
            raise ConfigError(f"bad option in {url!r}: pool_size must be >= 1")
        self._pool: asyncpg.Pool | None = None
        self._sql = _statements(self.results_table, self.outbox_table)

    async def open(self) -> None:
        """Connect and create the tables if missing.

        Raises:
            ConfigError: bad credentials, a missing database, or no privilege to
                create the tables (the message names the server and what to check).
            SinkUnavailable: the server cannot be reached.
        """
        if self._pool is not None:
            return
        with self._edge("cannot connect"):
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self.pool_size,
                timeout=self.connect_timeout,
                server_settings={"application_name": "scorebus"},
                init=_create_stage,
            )
        try:
            with self._edge("cannot create the tables"):
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

    def _translate(self, exc: Exception, doing: str) -> Exception | None:
        """The scorebus error for an asyncpg/socket error, or ``None`` to let it through."""
        where = f"PostgreSQL at {self.server}"
        if isinstance(
            exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError
        ):
            return ConfigError(
                f"{where} refused user {self.user!r}: check the user and password in the URL"
                f" and the server's pg_hba.conf ({exc})"
            )
        if isinstance(exc, asyncpg.InvalidCatalogNameError):
            return ConfigError(f"{where}: {exc}: create the database or fix the URL's path")
        if isinstance(exc, asyncpg.InsufficientPrivilegeError):
            return ConfigError(
                f"{where}: user {self.user!r} lacks a privilege ({exc}): grant CREATE on the"
                f" schema and INSERT/SELECT/DELETE on {self.results_table} and {self.outbox_table}"
            )
        if isinstance(exc, _TRANSIENT):
            return SinkUnavailable(
                f"{where}: {doing}: {type(exc).__name__}: {str(exc) or 'connection lost'}:"
                " check the server is running and reachable at the URL's host and port",
                retry_after_s=1.0,
            )
        return None

    @contextmanager
    def _edge(self, doing: str) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            translated = self._translate(exc, doing)
            if translated is None:
                raise
            raise translated from exc

    def _open_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise ConfigError(f"store at {self.server} is not open: call open() first")
        return self._pool

    async def _run(self, method: str, sql: str, *args: Any) -> Any:
        pool = self._open_pool()
        with self._edge("query failed"):
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
        with self._edge("write failed"):
            async with pool.acquire() as conn, conn.transaction():
                await conn.copy_records_to_table(_STAGE, records=rows, schema_name="pg_temp")
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
        with self._edge("relaying the outbox failed"):
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


_STAGE = "scorebus_stage"


async def _create_stage(conn: asyncpg.Connection) -> None:
    # Each connection stages its batches in its own temporary table; ON COMMIT
    # DELETE ROWS empties it, and a rolled-back COPY leaves nothing behind.
    await conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} ("
        'scorer TEXT COLLATE "C", event_id TEXT COLLATE "C", model TEXT, model_version TEXT,'
        " output JSONB, event_time DOUBLE PRECISION, scored_at DOUBLE PRECISION,"
        " latency_ms DOUBLE PRECISION, service_ms DOUBLE PRECISION) ON COMMIT DELETE ROWS"
    )


def _statements(results: str, outbox: str) -> dict[str, str]:
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
        f"INSERT INTO {results} ({_COLS}) SELECT {_COLS} FROM pg_temp.{_STAGE}"
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
