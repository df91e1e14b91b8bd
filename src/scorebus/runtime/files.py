"""Files for batch jobs: ``Storage`` (where they live), row readers and writers.

Formats, by extension or content type: CSV (``.csv``, UTF-8, a header row),
JSON lines (``.jsonl``, ``.ndjson``, ``.json``) and Parquet (``.parquet``,
``.pq``). Reading streams: text in 1 MiB blocks, Parquet by record batches,
handed on in chunks of rows, so memory is bounded by the chunk, not the file.
Each record has a 1-based ``row`` (the n-th data record: a CSV header and
blank lines do not count) and, in text formats, the ``line`` it starts on. A
record that does not parse comes with ``error`` set; a file that cannot be
read at all (not UTF-8, corrupt Parquet) raises ``DecodeError``.

``LocalStorage`` serves paths and ``file://`` URIs, ``gcp.storage.GcsStorage`` ``gs://``.
A file from ``open_write`` appears only when closed without an exception.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Literal, NamedTuple, Protocol
from urllib.parse import unquote, urlsplit

import msgspec

from ..errors import ConfigError, DecodeError, PermanentError
from ..events import decode_json

Format = Literal["csv", "jsonl", "parquet"]
EXTENSIONS: dict[str, Format] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
EXTENSIONS.update(dict.fromkeys((".jsonl", ".ndjson", ".json"), "jsonl"))
CONTENT_TYPE_OF: dict[Format, str] = {
    "csv": "text/csv",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}
CONTENT_TYPES: dict[str, Format] = {v: k for k, v in CONTENT_TYPE_OF.items()}
CONTENT_TYPES |= {"application/csv": "csv", "application/jsonl": "jsonl"}
_BLOCK = 1 << 20


class Storage(Protocol):
    """Where batch files are read and written, addressed by URI."""

    def open_read(self, uri: str) -> BinaryIO:
        """A seekable binary file; ``FileNotFoundError`` when there is none."""

    def open_write(self, uri: str) -> BinaryIO:
        """A file that replaces ``uri`` whole when closed without an exception."""

    def exists(self, uri: str) -> bool: ...


class LocalStorage:
    """Plain paths, ``file:///abs/path`` and ``file://./relative/path``."""

    def path(self, uri: str) -> Path:
        """The local path of ``uri``; ``ConfigError`` for another scheme."""
        if "://" not in uri:
            return Path(uri)
        parts = urlsplit(uri)
        if parts.scheme == "file" and parts.netloc in ("", "localhost", "."):
            return Path(("." if parts.netloc == "." else "") + unquote(parts.path))
        hint = " (gs:// needs scorebus.gcp.storage.GcsStorage)" if parts.scheme == "gs" else ""
        raise ConfigError(f"{uri!r}: local storage reads paths and file:// URIs only{hint}")

    def open_read(self, uri: str) -> BinaryIO:
        return self.path(uri).open("rb")

    def open_write(self, uri: str) -> BinaryIO:
        path = self.path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        return _AtomicFile(path)

    def exists(self, uri: str) -> bool:
        return self.path(uri).is_file()


class _AtomicFile(io.BufferedWriter):
    """Writes ``.NAME.RANDOM.tmp`` beside the target; renamed over it on a clean close."""

    def __init__(self, path: Path) -> None:
        self._final, self._keep = path, True
        self._tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        super().__init__(io.FileIO(self._tmp, "xb"), buffer_size=_BLOCK)

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self._keep:
                self.flush()
                os.fsync(self.fileno())
        except BaseException:
            self._keep = False  # never rename a file that may be short
            raise
        finally:
            super().close()
            if self._keep:
                os.replace(self._tmp, self._final)
            else:
                self._tmp.unlink(missing_ok=True)

    def __exit__(self, *exc_info: object) -> None:
        self._keep = exc_info[0] is None  # an exception: keep the old file, drop this one
        self.close()


def detect_format(uri: str, content_type: str | None = None) -> Format:
    """The format of ``uri`` by its extension, else its content type; ``DecodeError`` if neither."""
    ext = os.path.splitext(uri.rsplit("/", 1)[-1])[1].lower()
    if ext in EXTENSIONS:
        return EXTENSIONS[ext]
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype in CONTENT_TYPES:
        return CONTENT_TYPES[ctype]
    raise DecodeError(
        f"{uri}: cannot tell the format from extension {ext or '(none)'!r} or content type "
        f"{content_type!r}; use .csv, .jsonl/.ndjson/.json or .parquet"
    )


class RawRow(NamedTuple):
    """One record as read: ``data`` when it parsed, ``error`` when it did not."""

    row: int
    line: int | None
    data: dict[str, Any] | None
    error: PermanentError | None = None


class RowReader:
    """Chunks of ``chunk_rows`` :class:`RawRow` from binary file ``f``; ``total``: Parquet's."""

    def __init__(self, f: BinaryIO, fmt: Format, chunk_rows: int = 4096) -> None:
        self.f, self.fmt, self.chunk_rows = f, fmt, max(1, chunk_rows)
        self.total: int | None = None
        self._parquet: Any = None
        if fmt == "parquet":
            pq = _pyarrow()[1]
            try:
                self._parquet = pq.ParquetFile(f)
            except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
                raise DecodeError(f"not a readable Parquet file: {exc}") from exc
            self.total = int(self._parquet.metadata.num_rows)

    def __iter__(self) -> Iterator[list[RawRow]]:
        if self._parquet is not None:
            return self._parquet_chunks()
        rows = self._csv_rows() if self.fmt == "csv" else self._jsonl_rows()
        return iter(lambda: list(itertools.islice(rows, self.chunk_rows)), [])

    def _lines(self) -> Iterator[tuple[int, str]]:
        # Split bytes on b"\n", never part of a UTF-8 sequence: a block boundary
        # cannot cut a character in two.
        rest, number = b"", 0
        while block := self.f.read(_BLOCK):
            *lines, rest = (rest + block).split(b"\n")
            for raw in lines:
                number += 1
                yield number, _text(raw, number)
        if rest:
            yield number + 1, _text(rest, number + 1)

    def _jsonl_rows(self) -> Iterator[RawRow]:
        row = 0
        for number, text in self._lines():
            if not text.strip():
                continue
            row += 1
            try:
                obj = decode_json(text)
                if not isinstance(obj, dict):
                    raise DecodeError(f"expected a JSON object, got {type(obj).__name__}")
                yield RawRow(row, number, obj)
            except DecodeError as exc:
                yield RawRow(row, number, None, exc)

    def _csv_rows(self) -> Iterator[RawRow]:
        lines = self._lines()
        reader = csv.reader(text for _, text in lines)
        try:
            header = next(reader, None)
            if header is None:
                return
            row, start = 0, reader.line_num + 1
            for values in reader:
                line, start = start, reader.line_num + 1
                if not values or values == [""]:
                    continue
                row += 1
                if len(values) != len(header):
                    why = f"{len(values)} fields, the header has {len(header)}"
                    yield RawRow(row, line, None, DecodeError(why))
                    continue
                # An empty cell is a missing value: a default applies, or the schema names it.
                yield RawRow(row, line, {k: v for k, v in zip(header, values, strict=True) if v})
        except csv.Error as exc:
            raise DecodeError(f"line {reader.line_num}: not valid CSV: {exc}") from exc

    def _parquet_chunks(self) -> Iterator[list[RawRow]]:
        row = 0
        try:
            for batch in self._parquet.iter_batches(batch_size=self.chunk_rows):
                records = batch.to_pylist()
                yield [RawRow(row + i + 1, None, rec) for i, rec in enumerate(records)]
                row += len(records)
        except (OSError, ValueError) as exc:  # ArrowIOError, ArrowInvalid
            raise DecodeError(f"Parquet, from row {row + 1}: {exc}") from exc


class RowWriter:
    """Rows (dicts) to binary file ``f`` (left open) as CSV, JSON lines or Parquet.

    The first rows written fix a CSV header or Parquet schema (``columns`` if none are).
    """

    def __init__(self, f: BinaryIO, fmt: Format, columns: Sequence[str] = ()) -> None:
        self.f, self.fmt, self._default = f, fmt, list(columns)
        self.columns: list[str] | None = None
        self._text: io.TextIOWrapper | None = None
        self._csv: Any = None
        self._parquet: Any = None  # a pyarrow ParquetWriter, and the schema it writes
        self._schema: Any = None

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        if self.fmt == "jsonl":
            self.f.write(_encoder.encode_lines(rows))
            return
        if self.columns is None:
            self._start(list(rows[0]), rows)
        cols = self.columns or []
        if self._csv is not None:
            cells = ([r.get(c) for c in cols] for r in rows)
            self._csv.writerows([[v if type(v) in _PLAIN else _cell(v) for v in x] for x in cells])
        else:
            table = _pyarrow()[0].Table.from_pylist(list(rows), schema=self._schema)
            self._parquet.write_table(table)

    def finish(self) -> None:
        """Write what is buffered (and a header or schema for an empty file)."""
        if self.columns is None and self.fmt != "jsonl":
            self._start(self._default, [])
        if self._text is not None:
            self._text.flush()
            self._text.detach()
        if self._parquet is not None:
            self._parquet.close()
        self.f.flush()

    def _start(self, columns: list[str], rows: Sequence[dict[str, Any]]) -> None:
        self.columns = columns
        if self.fmt == "csv":
            self._text = io.TextIOWrapper(self.f, encoding="utf-8", newline="")
            self._csv = csv.writer(self._text)
            self._csv.writerow(columns)
            return
        pa, pq = _pyarrow()
        sample = pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows])
        fields = [
            pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in sample.schema
        ] or [pa.field(c, pa.string()) for c in columns]
        self._schema = pa.schema(fields)
        self._parquet = pq.ParquetWriter(self.f, self._schema)


def _text(raw: bytes, number: int) -> str:
    try:
        return raw.decode("utf-8-sig" if number == 1 else "utf-8") + "\n"
    except UnicodeDecodeError as exc:
        raise DecodeError(f"line {number}: not UTF-8: {exc}") from exc


_PLAIN = {str, int, float, type(None)}  # the csv module writes these as they are


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return _encoder.encode(value).decode() if isinstance(value, dict | list | tuple) else value


def _enc_hook(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    raise NotImplementedError(f"cannot encode {type(obj).__name__} in a result")


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError("Parquet files need pyarrow: pip install 'scorebus[parquet]'") from exc
    return pa, pq
