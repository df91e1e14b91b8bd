"""Sinks: idempotent writes of scored results, keyed by (scorer, event id)."""

from __future__ import annotations

from .._extras import load_backend
from ..errors import ConfigError
from .base import OutboxEvent, ResultStore, ScoreResult, Sink, StoredResult

# scheme -> (module, class, pip extra); imported only when used.
BACKENDS: dict[str, tuple[str, str, str | None]] = {
    "sqlite": ("sqlite", "SqliteResultStore", None),
    "postgresql": ("postgres", "PostgresResultStore", "postgres"),
    "bigquery": ("bigquery", "BigQuerySink", "bigquery"),
    "file": ("files", "FileSink", None),
}
SCHEMES = tuple(BACKENDS)


def open_sink(url: str) -> Sink:
    """A sink from its URL.

    Raises:
        ConfigError: the scheme is unknown (the message lists the valid ones).
    """
    scheme = url.partition("://")[0]
    if scheme == "postgres":
        scheme = "postgresql"
    if scheme in BACKENDS:
        module, cls, extra = BACKENDS[scheme]
        return load_backend(__name__, module, cls, extra)(url)  # type: ignore[no-any-return]
    raise ConfigError(
        f"unknown store URL {url!r}: valid schemes are {', '.join(s + '://' for s in SCHEMES)}"
    )


def open_store(url: str) -> ResultStore:
    """A sink that can be read back (status, results, the outbox relay).

    Raises:
        ConfigError: the URL is unknown or names a write-only sink.
    """
    sink = open_sink(url)
    if not isinstance(sink, ResultStore):
        raise ConfigError(
            f"store URL {url!r} names a write-only sink; a store must be readable "
            "(sqlite:///FILE or postgresql://...)"
        )
    return sink


__all__ = [
    "OutboxEvent",
    "ResultStore",
    "ScoreResult",
    "Sink",
    "StoredResult",
    "open_sink",
    "open_store",
]
