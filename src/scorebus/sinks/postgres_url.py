"""The PostgreSQL results store's URL, parsed and checked once.

Apart from :mod:`.postgres` because reading the URL is its own job: our options
(``table``, ``outbox``, ``pool_size``, ``connect_timeout``) are taken out and
validated, table names are checked and quoted before any of them reaches SQL,
and what is left is handed on to asyncpg/libpq untouched (``sslmode``, ...).
The options themselves are listed in :mod:`.postgres`'s docstring.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import ConfigError

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")
_OPTIONS = frozenset({"table", "outbox", "pool_size", "connect_timeout"})


@dataclass(frozen=True, kw_only=True)
class PostgresOptions:
    """A store URL, split into what asyncpg gets and what scorebus keeps.

    Attributes:
        dsn: the URL without scorebus's options, for asyncpg.
        server: ``HOST:PORT/DB``, for messages.
        user: the URL's user name (``""`` when none), for messages.
        results_table: the results table, quoted (``"schema"."name"``).
        outbox_table: the outbox table, quoted.
        pool_size: most connections in the pool.
        connect_timeout: seconds to wait for a connection.
    """

    dsn: str
    server: str
    user: str
    results_table: str
    outbox_table: str
    pool_size: int
    connect_timeout: float


def quote_table(name: str, what: str, url: str) -> str:
    """``[schema.]name`` double-quoted for SQL; ConfigError for anything else."""
    if not _IDENT.match(name):
        raise ConfigError(
            f"bad {what} name {name!r} in {url!r}: use [schema.]name with letters, digits, '_'"
        )
    return ".".join(f'"{part}"' for part in name.split("."))


def parse_url(url: str) -> PostgresOptions:
    """The options of ``postgresql://USER[:PASSWORD]@HOST[:PORT]/DB[?...]``.

    Raises:
        ConfigError: an option or table name is not valid.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    opts = {k: v for k, v in query if k in _OPTIONS}
    rest = [(k, v) for k, v in query if k not in _OPTIONS]
    # asyncpg knows postgres:// and postgresql://; our options must not reach it
    # (it would send unknown ones to the server as settings).
    dsn = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(rest), parts.fragment))
    try:
        port = parts.port or 5432
    except ValueError as exc:
        raise ConfigError(f"bad PostgreSQL URL {url!r}: {exc}") from exc
    results_table = quote_table(opts.get("table", "scorebus_results"), "table", url)
    outbox_table = quote_table(opts.get("outbox", "scorebus_outbox"), "outbox", url)
    try:
        pool_size = int(opts.get("pool_size", "4"))
        connect_timeout = float(opts.get("connect_timeout", "10"))
    except ValueError as exc:
        raise ConfigError(f"bad option in {url!r}: {exc}") from exc
    if pool_size < 1:
        raise ConfigError(f"bad option in {url!r}: pool_size must be >= 1")
    return PostgresOptions(
        dsn=dsn,
        server=f"{parts.hostname or 'localhost'}:{port}{parts.path or '/'}",
        user=parts.username or "",
        results_table=results_table,
        outbox_table=outbox_table,
        pool_size=pool_size,
        connect_timeout=connect_timeout,
    )
