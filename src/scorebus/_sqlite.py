"""One SQLite connection owned by one thread, driven from asyncio.

The embedded broker and the SQLite results store both need this: sqlite3 calls
block, and a connection is safest used from a single thread, so every call is
shipped to a dedicated one-thread executor. WAL mode lets readers run beside the
one writer; ``busy_timeout`` makes writers in other processes queue instead of
failing.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError, TransientError

R = TypeVar("R")


def path_from_url(url: str) -> Path:
    """``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ConfigError(
            f"bad SQLite URL {url!r}: expected sqlite:///relative/file.db or sqlite:////abs/file.db"
        )
    return Path(url[len(prefix) :])


class SqliteThread:
    """A lazily opened connection to ``path`` with ``schema`` applied once.

    ``migrate``, if given, runs first in the same transaction, to bring a file
    written by an earlier version up to ``schema``.
    """

    def __init__(
        self,
        path: Path,
        schema: str,
        *,
        busy_timeout_ms: int = 30_000,
        migrate: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        self.path = path
        self._schema = schema
        self._migrate = migrate
        self._busy_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"sqlite-{path.name}")

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            except (OSError, sqlite3.Error) as exc:
                raise ConfigError(f"cannot open SQLite database {str(self.path)!r}: {exc}") from exc
            try:
                conn.execute("PRAGMA busy_timeout = 0")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                # RETURNING and sorting build small temporary tables: keep them in
                # memory (a lease of 512 messages is ~15% cheaper than via a temp file).
                conn.execute("PRAGMA temp_store = MEMORY")
                with self.transaction(conn):
                    if self._migrate is not None:
                        self._migrate(conn)
                    for statement in filter(str.strip, self._schema.split(";")):
                        conn.execute(statement)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    @staticmethod
    @contextmanager
    def transaction(conn: sqlite3.Connection) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on error.

        IMMEDIATE takes the write lock up front, so two processes never deadlock
        upgrading read locks; the wait is bounded by ``busy_timeout``.
        """
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            # Also when COMMIT itself failed: leave no transaction open for the retry.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _call(self, fn: Callable[..., R], *args: Any) -> R:
        # SQLite's own busy handler sleeps 1, 2, 5, 10 ... 100 ms between tries,
        # which starves competing worker processes; a short, jittered backoff of
        # our own keeps the write lock moving. ``fn`` runs in one transaction, so
        # a retry after "database is locked" starts from a clean slate.
        give_up = time.monotonic() + self._busy_ms / 1000
        pause = 0.00005
        while True:
            try:
                return fn(self._connect(), *args)
            except sqlite3.OperationalError as exc:
                locked = "locked" in str(exc) or "busy" in str(exc)
                if not locked or time.monotonic() > give_up:
                    # Disk I/O errors and a lock held past the timeout: may heal.
                    raise TransientError(f"SQLite {self.path}: {exc}") from exc
                time.sleep(pause * (0.5 + random.random()))
                # Capped well below one batch's transaction (1-3 ms for 512 rows), so
                # a waiter does not sleep through most of the next free window.
                pause = min(pause * 2, 0.0005)

    async def run(self, fn: Callable[..., R], *args: Any) -> R:
        """Run ``fn(conn, *args)`` on the connection's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._call, fn, *args)

    def run_sync(self, fn: Callable[..., R], *args: Any) -> R:
        """Same as :meth:`run`, from synchronous code."""
        return self._pool.submit(self._call, fn, *args).result()

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._close)
        self._pool.shutdown(wait=True)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
