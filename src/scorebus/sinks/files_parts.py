"""The part files of the file sink on disk: row format, recovery, Parquet conversion.

Apart from :mod:`.files` because these are the rules of the files themselves,
whoever writes them: what a row looks like, how a part left by a crashed
writer is told from a live writer's (``flock``) and repaired (a torn last line
is cut off), how a JSON-lines journal becomes a ``*.parquet`` file (written
aside, fsync'ed, renamed), and how the keys already stored are read back.
:class:`~scorebus.sinks.files.FileSink` keeps the open part and the keys seen.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from ..errors import ConfigError
from .base import ScoreResult

_PARQUET_HINT = "format=parquet needs pyarrow: pip install 'scorebus[parquet]'"


class _Row(msgspec.Struct, kw_only=True):
    scorer: str
    event_id: str
    model: str
    model_version: str
    output: msgspec.Raw
    event_time: float
    scored_at: float
    latency_ms: float
    service_ms: float


_COLUMNS = _Row.__struct_fields__


class _Key(msgspec.Struct):
    scorer: str
    event_id: str


_encoder = msgspec.json.Encoder()
_row_decoder = msgspec.json.Decoder(_Row)
_key_decoder = msgspec.json.Decoder(_Key)


def pyarrow_modules() -> tuple[Any, Any]:
    """``(pyarrow, pyarrow.parquet)``; an ImportError naming the pip command without them."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError(_PARQUET_HINT) from exc
    return pa, pq


def encode_rows(results: Iterable[ScoreResult]) -> bytes:
    """The JSON lines of ``results``, one row each, every line ending in ``\\n``."""
    return _encoder.encode_lines([_row(r) for r in results])


def _row(r: ScoreResult) -> _Row:
    return _Row(
        scorer=r.scorer,
        event_id=r.event_id,
        model=r.model,
        model_version=r.model_version,
        output=msgspec.Raw(r.output),
        event_time=r.event_time,
        scored_at=r.scored_at,
        latency_ms=r.latency_ms,
        service_ms=r.service_ms,
    )


def _lines(path: Path) -> tuple[bytes, bool]:
    """The file's complete lines, and whether it ends in a torn (partial) line."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    return data[:end], end < len(data)


def _read_keys(f: Any, path: Path) -> tuple[list[tuple[str, str]], int, bool]:
    """Keys of the complete lines, where they end, and whether a torn line follows.

    Read line by line so that opening a large directory holds keys, not files.
    """
    keys: list[tuple[str, str]] = []
    end = 0
    for number, line in enumerate(f, 1):
        if not line.endswith(b"\n"):
            return keys, end, True
        try:
            key = _key_decoder.decode(line)
        except msgspec.DecodeError as exc:
            raise ConfigError(
                f"file sink: {str(path)!r} line {number} is not a result row ({exc}):"
                " move the file out of the directory"
            ) from exc
        # One string per scorer name, not one per row: a third less memory per key.
        keys.append((sys.intern(key.scorer), key.event_id))
        end += len(line)
    return keys, end, False


def recover(path: Path) -> list[tuple[str, str]]:
    """Keys of a JSON-lines part; a crashed writer's part is repaired on the way."""
    with open(path, "rb+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                raise
            # A live writer's part: its last line may be in the middle of being written.
            return _read_keys(f, path)[0]
        keys, end, torn = _read_keys(f, path)
        if torn:
            # The writer died mid-write; that batch was never acked.
            f.truncate(end)
        if path.name.endswith(".parquet.journal"):
            to_parquet(path)
        return keys


def parquet_keys(path: Path) -> list[tuple[str, str]]:
    """The ``(scorer, event_id)`` keys of a finished Parquet part."""
    _, pq = pyarrow_modules()
    table = pq.read_table(path, columns=["scorer", "event_id"])
    return list(zip(table["scorer"].to_pylist(), table["event_id"].to_pylist(), strict=True))


def to_parquet(journal: Path) -> None:
    """Convert a journal to ``*.parquet`` (written aside, then renamed), then drop it."""
    pa, pq = pyarrow_modules()
    rows = [_row_decoder.decode(line) for line in _lines(journal)[0].splitlines()]
    columns: dict[str, list[Any]] = {c: [] for c in _COLUMNS}
    for row in rows:
        for c in _COLUMNS:
            value = getattr(row, c)
            columns[c].append(bytes(value).decode() if c == "output" else value)
    schema = pa.schema(
        [
            (c, pa.float64() if c.endswith(("_time", "_at", "_ms")) else pa.string())
            for c in _COLUMNS
        ]
    )
    target = journal.with_name(journal.name.removesuffix(".journal"))
    tmp = target.with_name(target.name + ".tmp")
    pq.write_table(pa.table(columns, schema=schema), tmp, compression="zstd")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, target)
    fsync_dir(journal.parent)
    with contextlib.suppress(FileNotFoundError):
        journal.unlink()


def fsync_dir(directory: Path) -> None:
    """Make the directory's entries (a new or renamed name) survive a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
