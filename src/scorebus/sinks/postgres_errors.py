"""asyncpg and socket errors, translated into scorebus's at the store's edge.

Apart from :mod:`.postgres` because which failures may heal is a judgement of
its own, made once for every call the store makes::

    ScorebusError
    ├── ConfigError          bad credentials, missing database, missing
    │                        privilege: the message names the server and what to check
    └── TransientError
        └── SinkUnavailable  connection lost, server restarting or out of
                             connections, serialization conflict: retried

Anything else (a bad statement, a constraint) is a bug and goes through as is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from ..errors import ConfigError, SinkUnavailable
from .postgres_url import PostgresOptions

# Failures that may heal by themselves: the connection dropped, the server is
# restarting or out of connections, a serialization conflict. Anything else
# (a bad statement, a constraint) is a bug or a configuration problem.
TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TransactionRollbackError,
)


def translate(exc: Exception, doing: str, opts: PostgresOptions) -> Exception | None:
    """The scorebus error for an asyncpg/socket error, or ``None`` to let it through."""
    where = f"PostgreSQL at {opts.server}"
    if isinstance(
        exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError
    ):
        return ConfigError(
            f"{where} refused user {opts.user!r}: check the user and password in the URL"
            f" and the server's pg_hba.conf ({exc})"
        )
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return ConfigError(f"{where}: {exc}: create the database or fix the URL's path")
    if isinstance(exc, asyncpg.InsufficientPrivilegeError):
        return ConfigError(
            f"{where}: user {opts.user!r} lacks a privilege ({exc}): grant CREATE on the"
            f" schema and INSERT/SELECT/DELETE on {opts.results_table} and {opts.outbox_table}"
        )
    if isinstance(exc, TRANSIENT):
        return SinkUnavailable(
            f"{where}: {doing}: {type(exc).__name__}: {str(exc) or 'connection lost'}:"
            " check the server is running and reachable at the URL's host and port",
            retry_after_s=1.0,
        )
    return None


@contextmanager
def edge(opts: PostgresOptions, doing: str) -> Iterator[None]:
    """Raise the block's asyncpg/socket errors as scorebus errors (``from`` the original)."""
    try:
        yield
    except Exception as exc:
        translated = translate(exc, doing, opts)
        if translated is None:
            raise
        raise translated from exc
