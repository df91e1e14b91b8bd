"""PostgreSQL joins the sink contract: ``postgresql://postgres@127.0.0.1:5432/test``.

Each test gets its own pair of tables, named from a per-process id and a hash of
the test's ``tmp_path``, so a test that closes and reopens its store finds its
own rows again. The tables are dropped when the test process exits (the
contract's factories have no teardown hook).
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import uuid
from pathlib import Path

import pytest
from tests.servers import require_server

from scorebus.sinks.postgres import PostgresResultStore

RUN = uuid.uuid4().hex[:8]
_created: set[str] = set()


def pg_url(database: str = "test", **options: str) -> str:
    """The loopback server's URL (trust auth) with query options."""
    port = require_server("postgresql")
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return f"postgresql://postgres@127.0.0.1:{port}/{database}" + (f"?{query}" if query else "")


def drop_tables(names: set[str]) -> None:
    """Drop test tables (best effort: the server may be gone by now)."""
    if not names:
        return

    async def run() -> None:
        import asyncpg

        conn = await asyncpg.connect(pg_url(), timeout=5)
        try:
            for name in sorted(names):
                await conn.execute(f'DROP TABLE IF EXISTS "{name}"')
        finally:
            await conn.close()

    try:
        asyncio.run(run())
    except Exception:  # the server is down or unreachable: nothing left to clean
        return
    names.clear()


atexit.register(drop_tables, _created)


def _store(tmp_path: Path) -> PostgresResultStore:
    tag = hashlib.sha1(str(tmp_path).encode()).hexdigest()[:10]
    results, outbox = f"sbt_{RUN}_{tag}_r", f"sbt_{RUN}_{tag}_o"
    _created.update((results, outbox))
    return PostgresResultStore(pg_url(table=results, outbox=outbox))


SINK = pytest.param(_store, id="postgres")
