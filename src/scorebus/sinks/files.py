"""The file sink for batch jobs: ``file:///path/to/dir?format=jsonl|parquet``.

Results are appended to part files in the directory, one open part per sink
(so per worker process), rolled over by rows or bytes::

    part-20250101T120000123-host-4242-1a2b-00000.jsonl     (format=jsonl)
    part-20250101T120000123-host-4242-1a2b-00000.parquet   (format=parquet)

Every ``write`` is on disk (flushed, and fsync'ed unless ``fsync=false``) before
it returns, so an acked result is never only in memory. Parquet files cannot be
appended to, so in ``format=parquet`` a part is journalled as JSON lines
(``*.parquet.journal``) and converted to Parquet when it rolls over or the sink
closes; a journal left by a crashed process is converted by the next sink that
opens the directory. A part being written is ``flock``-ed by its writer, which
tells a crashed writer's files (lockable) from a live one's (locked).

Idempotence: a result whose ``(scorer, event_id)`` this sink has seen is not
written again. ``dedupe=directory`` (the default) also reads the keys of every
part already in the directory on open, so a restarted job skips what it wrote
before: memory about 140 bytes per stored result plus the event id's length
(10 million results with 32-character ids: about 1.7 GB), read at about 700,000
keys a second. ``dedupe=lifetime`` skips that scan: duplicates are then dropped
only within one sink's lifetime. Two processes writing the same directory at
once do not see each other's new keys: an event redelivered to the other
process is written twice, so readers should deduplicate on ``(scorer,
event_id)`` when jobs overlap.

URL options: ``format`` (``jsonl``, default, or ``parquet``), ``max_rows``
(default 1000000) and ``max_bytes`` (default 268435456) per part, ``fsync``
(``true``/``false``, default true), ``dedupe`` (``directory``/``lifetime``).

The row format, crash recovery and Parquet conversion of the part files live in
:mod:`.files_parts`; this module keeps the open part and the keys seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from ..errors import ConfigError, SinkUnavailable
from .base import OutboxEvent, ScoreResult
from .files_parts import encode_rows, fsync_dir, parquet_keys, pyarrow_modules, recover, to_parquet

log = logging.getLogger(__name__)


def _flag(value: str, name: str, url: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"bad option {name}={value!r} in {url!r}: use true or false")


class FileSink:
    """A write-only sink of JSON-lines or Parquet part files; see the module docstring.

    Args:
        url: ``file:///abs/dir`` or ``file://./relative/dir``, with options.

    Raises:
        ConfigError: a bad URL or option.
        ImportError: ``format=parquet`` without pyarrow (names the pip command).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        parts = urlsplit(url)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost", ".") or not parts.path:
            raise ConfigError(
                f"bad file sink URL {url!r}: expected file:///abs/dir or file://./relative/dir"
            )
        path = unquote(parts.path)
        self.directory = Path("." + path if parts.netloc == "." else path)
        opts = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = set(opts) - {"format", "max_rows", "max_bytes", "fsync", "dedupe"}
        if unknown:
            raise ConfigError(f"unknown option(s) {sorted(unknown)} in {url!r}")
        self.format = opts.get("format", "jsonl")
        if self.format not in ("jsonl", "parquet"):
            raise ConfigError(f"bad option format={self.format!r} in {url!r}: jsonl or parquet")
        if self.format == "parquet":
            pyarrow_modules()  # fail now, with the pip command, not at the first roll-over
        try:
            self.max_rows = int(opts.get("max_rows", 1_000_000))
            self.max_bytes = int(opts.get("max_bytes", 256 << 20))
        except ValueError as exc:
            raise ConfigError(f"bad option in {url!r}: {exc}") from exc
        if self.max_rows < 1 or self.max_bytes < 1:
            raise ConfigError(f"bad option in {url!r}: max_rows and max_bytes must be >= 1")
        self.fsync = _flag(opts.get("fsync", "true"), "fsync", url)
        self.dedupe = opts.get("dedupe", "directory")
        if self.dedupe not in ("directory", "lifetime"):
            raise ConfigError(
                f"bad option dedupe={self.dedupe!r} in {url!r}: directory or lifetime"
            )
        self._suffix = ".jsonl" if self.format == "jsonl" else ".parquet.journal"
        now = time.time()
        # Milliseconds in the name: parts sort by when their sink opened.
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now * 1000) % 1000:03d}"
        host = socket.gethostname().split(".")[0] or "host"
        self._prefix = f"part-{stamp}-{host}-{os.getpid()}-{secrets.token_hex(2)}"
        self._seq = 0
        self._fd: int | None = None
        self._path: Path | None = None
        self._rows = 0
        self._bytes = 0
        self._keys: set[tuple[str, str]] = set()
        self._lock = asyncio.Lock()
        self._opened = False

    @property
    def parts(self) -> list[Path]:
        """The finished and in-progress part files of this directory, oldest name first."""
        pattern = "part-*.jsonl" if self.format == "jsonl" else "part-*.parquet*"
        return sorted(p for p in self.directory.glob(pattern) if not p.name.endswith(".tmp"))

    async def open(self) -> None:
        """Create the directory, recover crashed writers' parts and read existing keys.

        Raises:
            ConfigError: the directory cannot be created or read.
        """
        if self._opened:
            return
        try:
            await asyncio.to_thread(self._scan)
        except OSError as exc:
            raise ConfigError(
                f"file sink {str(self.directory)!r}: {exc}: check the path and its permissions"
            ) from exc
        self._opened = True

    def _scan(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for path in self.parts:
            keys = recover(path) if path.suffix != ".parquet" else parquet_keys(path)
            if self.dedupe == "directory":
                self._keys.update(keys)

    async def close(self) -> None:
        """Finish the open part (converting it to Parquet where asked).

        A conversion that fails is logged; its journal stays on disk and the next
        sink to open the directory converts it.
        """
        async with self._lock:
            try:
                await asyncio.to_thread(self._finish)
            except Exception:
                log.warning("file sink %s: could not finish the last part", self.url, exc_info=True)

    async def write(
        self, results: Sequence[ScoreResult], outbox: Sequence[OutboxEvent] = ()
    ) -> int:
        """Append the results not written before; returns how many were new.

        Raises:
            ConfigError: an outbox was given (a file cannot publish).
            SinkUnavailable: the disk refused the write (full, I/O error); the part
                is cut back to its last complete batch.
        """
        if outbox:
            raise ConfigError(
                f"{self.url}: a file sink cannot hold an outbox; store results in"
                " sqlite:// or postgresql:// to publish them, or publish without storing"
            )
        if not self._opened:
            await self.open()
        async with self._lock:
            batch: dict[tuple[str, str], ScoreResult] = {}
            for r in results:
                key = (r.scorer, r.event_id)
                if key not in self._keys and key not in batch:
                    batch[key] = r
            if not batch:
                return 0
            data = encode_rows(batch.values())
            await asyncio.to_thread(self._append, data, len(batch))
            self._keys.update(batch)
            return len(batch)

    def _append(self, data: bytes, rows: int) -> None:
        try:
            fd = self._fd if self._fd is not None else self._start()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self.fsync:
                os.fsync(fd)
        except OSError as exc:
            if self._fd is not None:
                # A short write must not leave half a line for the next batch to follow.
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._bytes)
            raise SinkUnavailable(
                f"file sink {str(self._path or self.directory)!r}: {exc}", retry_after_s=5.0
            ) from exc
        self._rows += rows
        self._bytes += len(data)
        if self._rows >= self.max_rows or self._bytes >= self.max_bytes:
            # The batch is safely on disk: a failed roll-over must not fail the
            # write, or the retry would write these rows a second time.
            try:
                self._finish()
            except Exception:
                log.warning("file sink %s: roll-over failed", self.url, exc_info=True)

    def _start(self) -> int:
        path = self.directory / f"{self._prefix}-{self._seq:05d}{self._suffix}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        # Held while the part is open: a reader can tell a live writer from a dead one.
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd, self._path, self._rows, self._bytes = fd, path, 0, 0
        self._seq += 1
        if self.fsync:
            fsync_dir(self.directory)  # the new name must survive a power cut too
        return fd

    def _finish(self) -> None:
        if self._fd is None or self._path is None:
            return
        fd, path = self._fd, self._path
        self._fd = self._path = None
        try:
            if self.format == "parquet":
                to_parquet(path)
        finally:
            os.close(fd)
