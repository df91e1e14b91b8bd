"""Batch prediction over one file: read, validate, score in batches, write beside it.

    report = batch_predict("data/txns.csv", model=model, schema=Transaction)
    print(report.scored, report.bad, report.output_uri)

``data/txns.csv`` gives ``data/txns.predictions.csv`` (same format; per good
row: ``row``, the input's id column, the outputs or ``fn``'s result, ``model``,
``model_version``) and ``data/txns.errors.jsonl`` (per bad row: ``row``,
``line``, ``id``, ``reason``, ``error``). Both replace an earlier run's files
whole, once the run has succeeded: a re-run is idempotent, a failed run leaves
the old outputs alone.

A bad row never stops the job: it does not parse (``undecodable``), fails the
schema (``schema``, naming the field), lacks a feature (``features``), or makes
the model or ``fn`` fail alone (``model``, ``postprocess``: a failing batch is
halved until the rows to blame are found). A ``TransientError`` (a remote model
away) or an unreadable file stops it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import numpy as np

from ..errors import ConfigError, PermanentError, SchemaError, TransientError
from ..events import Schema
from ..events.schema import _describe_msgspec
from ..models.base import Model
from .files import EXTENSIONS, Format, LocalStorage, RawRow, RowReader, RowWriter, Storage
from .files import detect_format as detect_format
from .spec import Features, PostProcess, feature_getter

log = logging.getLogger(__name__)

Progress = Callable[[int, int | None], None]
"""``progress(rows_done, total_rows_or_None)``, called after each batch."""


class BadRow(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A row that was not scored: its 1-based number, why, and the message."""

    row: int
    reason: str
    error: str
    line: int | None = None
    id: Any = None


class BatchReport(msgspec.Struct, frozen=True, kw_only=True):
    """What a batch prediction did; ``bad_rows`` lists the first bad rows only."""

    uri: str
    output_uri: str
    errors_uri: str
    format: str
    rows: int
    scored: int
    bad: int
    bad_rows: list[BadRow]
    model: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (what ``predictions.ready`` carries)."""
        return dict(msgspec.to_builtins(self))


def output_uris(uri: str, fmt: Format, out_uri: str | None = None) -> tuple[str, str]:
    """``(predictions, errors)``: ``NAME.predictions.EXT`` and ``NAME.errors.jsonl``.

    With ``out_uri`` the predictions go there and the errors beside it.
    """
    if out_uri is not None:
        return out_uri, f"{_stem(out_uri)}.errors.jsonl"
    stem = _stem(uri)
    return f"{stem}.predictions.{fmt}", f"{stem}.errors.jsonl"


def is_output(uri: str) -> bool:
    """True for a file a batch job writes, so a bucket trigger does not score it again."""
    name = uri.rsplit("/", 1)[-1]
    return ".predictions." in name or name.endswith(".errors.jsonl")


def _stem(uri: str) -> str:
    head, sep, name = uri.rpartition("/")
    base, dot, ext = name.rpartition(".")
    return head + sep + (base if dot and base and f".{ext.lower()}" in EXTENSIONS else name)


def batch_predict(
    uri: str,
    *,
    model: Model,
    schema: type[Any] | None = None,
    out_uri: str | None = None,
    batch_size: int = 4096,
    storage: Storage | None = None,
    fn: PostProcess | None = None,
    progress: Progress | None = None,
    content_type: str | None = None,
    id_column: str | None = "id",
    max_listed: int = 100,
) -> BatchReport:
    """Score every row of a CSV, JSON-lines or Parquet file; see the module docstring.

    Args:
        uri: the input: a path, ``file://`` URI, or any URI ``storage`` reads.
        model: a loaded model; features are taken by its signature's input names.
        schema: each row's type (msgspec Struct, pydantic model, ...), ``None`` for dicts.
            CSV cells are strings: numbers and booleans in them are converted.
        out_uri: where the predictions go; beside the input by default.
        batch_size: rows per ``predict`` call (and per read chunk).
        storage: reads and writes the files; local files by default.
        fn: ``fn(rows, predictions) -> results``, one per row, as a scorer's.
        progress: ``progress(rows_done, total)``; ``total`` is known for Parquet only.
        content_type: the input's content type, for a name without an extension.
        id_column: copied from input to output rows when present.
        max_listed: how many bad rows the report lists (all are in the errors file).

    Returns:
        The report: counts, output URIs, the model's ``name@version``, seconds.

    Raises:
        DecodeError: unknown format, or a file that cannot be read (not UTF-8, corrupt).
        ConfigError: the output would overwrite the input, or the schema lacks a feature.
        FileNotFoundError: no input file.
        TransientError: the model or the storage is unavailable; try again later.
    """
    started = time.monotonic()
    storage = storage or LocalStorage()
    fmt = detect_format(uri, content_type)
    out, errors = output_uris(uri, fmt, out_uri)
    if uri in (out, errors):
        raise ConfigError(f"{uri}: the output would overwrite the input; pass another out_uri")
    job = _Job(model, schema, fn, id_column, lax=fmt == "csv")
    rows = scored = bad_count = 0
    bad: list[BadRow] = []
    with contextlib.ExitStack() as stack:
        reader = RowReader(stack.enter_context(storage.open_read(uri)), fmt, batch_size)
        results = RowWriter(stack.enter_context(storage.open_write(out)), fmt, job.columns())
        errs = RowWriter(stack.enter_context(storage.open_write(errors)), "jsonl")
        for chunk in reader:
            good, failed = job.run(chunk)
            results.write(good)
            errs.write([msgspec.to_builtins(b) for b in failed])
            rows, scored, bad_count = rows + len(chunk), scored + len(good), bad_count + len(failed)
            bad.extend(failed[: max(0, max_listed - len(bad))])
            if progress is not None:
                progress(rows, reader.total)
        results.finish()
        errs.finish()
    seconds = time.monotonic() - started
    log.info(
        "batch uri=%s model=%s@%s rows=%d scored=%d bad=%d seconds=%.2f",
        uri, model.name, model.version, rows, scored, bad_count, seconds,
    )  # fmt: skip
    return BatchReport(
        uri=uri,
        output_uri=out,
        errors_uri=errors,
        format=fmt,
        rows=rows,
        scored=scored,
        bad=bad_count,
        bad_rows=bad,
        model=f"{model.name}@{model.version}",
        seconds=round(seconds, 3),
    )


class _Failed(Exception):
    def __init__(self, reason: str, exc: BaseException) -> None:
        super().__init__(reason)
        self.reason = reason
        text = str(exc).strip().split("\n", 1)[0][:500]  # libraries append paragraphs of advice
        if isinstance(exc, KeyError):
            text = f"missing column {text}"
        kind = "" if isinstance(exc, PermanentError | KeyError) else f"{type(exc).__name__}: "
        self.message = kind + text


Item = tuple[RawRow, Any]  # the row as read, its validated data


class _Job:
    """Validate, score and shape the rows of one file."""

    def __init__(
        self, model: Model, schema: Any, fn: PostProcess | None, id_column: str | None, lax: bool
    ) -> None:
        self.model, self.fn, self.id_column = model, fn, id_column
        self.convert = _converter(schema, lax)
        self.features: Features | None = None
        self.outputs = tuple(model.signature.outputs)
        self.tail = {"model": model.name, "model_version": str(model.version)}
        fields = getattr(schema, "__struct_fields__", None)
        missing = [n for n in model.signature.inputs if fields is not None and n not in fields]
        if missing:
            raise ConfigError(f"schema {schema.__name__} lacks the model's inputs {missing}")

    def columns(self) -> list[str]:
        """The columns of an output with no rows."""
        return ["row", *(() if self.fn else self.outputs), *self.tail]

    def run(self, chunk: list[RawRow]) -> tuple[list[dict[str, Any]], list[BadRow]]:
        good: list[Item] = []
        bad: list[BadRow] = []
        for raw in chunk:
            try:
                if raw.error is not None:
                    raise raw.error
                good.append((raw, self.convert(raw.data)))
            except PermanentError as exc:
                bad.append(self._bad(raw, exc.reason, str(exc)))
        rows, failed = self._isolate(good)
        return rows, sorted(bad + failed, key=lambda b: b.row)

    def _isolate(self, items: list[Item]) -> tuple[list[dict[str, Any]], list[BadRow]]:
        # Score the batch; when it fails, halve it until the failing rows are alone.
        if not items:
            return [], []
        try:
            return self._score(items), []
        except _Failed as exc:
            if len(items) == 1:
                return [], [self._bad(items[0][0], exc.reason, exc.message)]
        half = len(items) // 2
        rows_a, bad_a = self._isolate(items[:half])
        rows_b, bad_b = self._isolate(items[half:])
        return rows_a + rows_b, bad_a + bad_b

    def _score(self, items: list[Item]) -> list[dict[str, Any]]:
        data = [x for _, x in items]
        stage = "features"
        try:
            if self.features is None:
                self.features = feature_getter(self.model.signature.inputs, data[0])
            x = self.features(data)
            stage = "model"
            predictions = self.model.predict(x)
            if len(predictions) != len(data):
                raise ValueError(f"{len(predictions)} predictions for {len(data)} rows")
            stage = "postprocess"
            if self.fn is None:
                results: Sequence[Any] = _default_results(self.outputs, predictions)
            else:
                results = self.fn(data, predictions)
            if len(results) != len(data):
                raise ValueError(f"fn returned {len(results)} results for {len(data)} rows")
        except TransientError:
            raise
        except Exception as exc:
            raise _Failed(stage, exc) from exc
        return [self._row(raw, res) for (raw, _), res in zip(items, results, strict=True)]

    def _row(self, raw: RawRow, result: Any) -> dict[str, Any]:
        row: dict[str, Any] = {"row": raw.row}
        if self.id_column and raw.data and self.id_column in raw.data:
            row[self.id_column] = raw.data[self.id_column]
        if isinstance(result, msgspec.Struct):
            result = msgspec.to_builtins(result)
        row.update(result if isinstance(result, dict) else {"result": result})
        row.update(self.tail)
        return row

    def _bad(self, raw: RawRow, reason: str, error: str) -> BadRow:
        ident = raw.data.get(self.id_column) if raw.data and self.id_column else None
        return BadRow(row=raw.row, line=raw.line, id=ident, reason=reason, error=error)


def _converter(schema: Any, lax: bool) -> Callable[[Any], Any]:
    compiled: Schema[Any] = Schema(schema)
    if schema is None or not lax or hasattr(schema, "model_validate"):
        return compiled.convert  # pydantic is lax about strings by itself

    def convert(obj: Any) -> Any:
        # CSV cells are strings: accept "1.5" for a float and "true" for a bool.
        try:
            return msgspec.convert(obj, schema, strict=False)
        except msgspec.ValidationError as exc:
            raise SchemaError(_describe_msgspec(exc)) from exc

    return convert


def _default_results(outputs: tuple[str, ...], predictions: Any) -> list[dict[str, Any]]:
    arr = np.asarray(predictions)
    if arr.ndim == 1:
        key = outputs[0] if len(outputs) == 1 else "score"
        return [{key: v} for v in arr.tolist()]
    width = arr.shape[1]
    names = outputs if len(outputs) == width else [f"output_{i}" for i in range(width)]
    return [dict(zip(names, row, strict=True)) for row in arr.tolist()]
