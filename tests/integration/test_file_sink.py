"""The file sink on the real file system: part files, roll-over, idempotence within
a lifetime and across restarts, Parquet, and recovery after a writer is killed.

The file sink is write-only (no reading back, no outbox), so it cannot join the
results-store contract in ``tests/contract/test_sink_contract.py``; this file
checks its own guarantees instead.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.parquet as pq
import pytest

from scorebus.brokers.sqlite import SqliteBroker
from scorebus.errors import ConfigError, SinkUnavailable
from scorebus.events import Event, Schema
from scorebus.runtime.config import Batch
from scorebus.runtime.spec import ScorerSpec
from scorebus.runtime.worker import Worker
from scorebus.sinks import Sink, open_sink, open_store
from scorebus.sinks import files as files_module
from scorebus.sinks.base import OutboxEvent, ResultStore, ScoreResult
from scorebus.sinks.files import FileSink

ROOT = Path(__file__).resolve().parents[2]


def _result(event_id: str, scorer: str = "s", output: Any = None) -> ScoreResult:
    now = time.time()
    return ScoreResult(
        scorer=scorer,
        event_id=event_id,
        model="m",
        model_version="2",
        output=msgspec.json.encode({"score": 0.5} if output is None else output),
        event_time=now - 1,
        scored_at=now,
        latency_ms=1000.0,
        service_ms=3.0,
    )


def _jsonl_rows(directory: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for part in sorted(directory.glob("part-*.jsonl"))
        for line in part.read_text().splitlines()
    ]


def _parquet_rows(directory: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for part in sorted(directory.glob("part-*.parquet")):
        rows += pq.read_table(part).to_pylist()
    return rows


async def _write_all(url: str, *batches: list[ScoreResult]) -> list[int]:
    sink = FileSink(url)
    await sink.open()
    try:
        return [await sink.write(b) for b in batches]
    finally:
        await sink.close()


def test_open_sink_gives_a_write_only_sink(tmp_path: Path) -> None:
    sink = open_sink(f"file://{tmp_path}/out")

    assert isinstance(sink, FileSink) and isinstance(sink, Sink)
    assert not isinstance(sink, ResultStore)
    with pytest.raises(ConfigError, match="write-only sink"):
        open_store(f"file://{tmp_path}/out")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("file://host/dir", "expected file:///abs/dir"),
        ("file:///tmp/x?format=csv", "format='csv'"),
        ("file:///tmp/x?max_rows=0", "must be >= 1"),
        ("file:///tmp/x?max_rows=many", "bad option"),
        ("file:///tmp/x?fsync=maybe", "use true or false"),
        ("file:///tmp/x?dedupe=never", "directory or lifetime"),
        ("file:///tmp/x?colour=blue", "unknown option"),
    ],
)
def test_bad_urls_are_config_errors(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem.replace("(", r"\(")):
        FileSink(url)


def test_jsonl_rows_are_written_once_within_a_lifetime(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/out"
    batch = [_result("e1", output={"score": 0.25, "flag": True}), _result("e2")]

    counts = asyncio.run(
        _write_all(url, batch, batch, [_result("e2"), _result("e3"), _result("e3")], [])
    )

    assert counts == [2, 0, 1, 0]
    rows = _jsonl_rows(tmp_path / "out")
    assert [r["event_id"] for r in rows] == ["e1", "e2", "e3"]
    first = rows[0]
    assert first["output"] == {"score": 0.25, "flag": True}
    assert (first["scorer"], first["model"], first["model_version"]) == ("s", "m", "2")
    assert (first["latency_ms"], first["service_ms"]) == (1000.0, 3.0)
    assert first["scored_at"] - first["event_time"] == pytest.approx(1.0)


def test_the_key_is_scorer_and_event_id(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/out"

    counts = asyncio.run(_write_all(url, [_result("e1", "a"), _result("e1", "b")]))

    assert counts == [2]
    assert sorted((r["scorer"], r["event_id"]) for r in _jsonl_rows(tmp_path / "out")) == [
        ("a", "e1"),
        ("b", "e1"),
    ]


def test_a_restart_skips_what_the_directory_already_holds(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/out"
    asyncio.run(_write_all(url, [_result(f"e{i}") for i in range(5)]))

    again = asyncio.run(_write_all(url, [_result(f"e{i}") for i in range(3, 8)]))
    forgetful = asyncio.run(_write_all(url + "?dedupe=lifetime", [_result("e0")]))

    assert again == [3]
    assert forgetful == [1]  # dedupe=lifetime does not read the directory
    ids = [r["event_id"] for r in _jsonl_rows(tmp_path / "out")]
    assert sorted(ids) == ["e0", "e0", "e1", "e2", "e3", "e4", "e5", "e6", "e7"]
    # Each sink writes its own part: nobody appends to another's file.
    assert len(list((tmp_path / "out").glob("part-*.jsonl"))) == 3


def test_parts_roll_over_by_rows_and_by_bytes(tmp_path: Path) -> None:
    by_rows = f"file://{tmp_path}/rows?max_rows=4"
    by_bytes = f"file://{tmp_path}/bytes?max_bytes=600"
    batches = [[_result(f"e{i}-{j}") for j in range(2)] for i in range(5)]

    asyncio.run(_write_all(by_rows, *batches))
    asyncio.run(_write_all(by_bytes, *batches))

    sizes = [len(p.read_text().splitlines()) for p in sorted((tmp_path / "rows").glob("*"))]
    assert sizes == [4, 4, 2]
    byte_parts = sorted((tmp_path / "bytes").glob("*"))
    assert len(byte_parts) > 1
    # A part closes once it reaches the limit, so none passes it by more than a batch.
    assert all(p.stat().st_size < 600 + 400 for p in byte_parts)
    assert len(_jsonl_rows(tmp_path / "bytes")) == 10


def test_parquet_parts_are_complete_files_after_close(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/pq?format=parquet&max_rows=3"

    counts = asyncio.run(
        _write_all(url, [_result("a"), _result("b")], [_result("b"), _result("c", output=[1, 2])])
    )
    again = asyncio.run(_write_all(url, [_result("a"), _result("d")]))

    assert (counts, again) == ([2, 1], [1])
    assert not list((tmp_path / "pq").glob("*.journal"))
    rows = _parquet_rows(tmp_path / "pq")
    assert sorted(r["event_id"] for r in rows) == ["a", "b", "c", "d"]
    assert {r["event_id"]: json.loads(r["output"]) for r in rows}["c"] == [1, 2]
    schema = pq.read_schema(next((tmp_path / "pq").glob("*.parquet")))
    assert str(schema.field("scored_at").type) == "double"
    assert str(schema.field("output").type) == "string"


def test_a_missing_pyarrow_names_the_pip_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)

    with pytest.raises(ImportError, match=r"pip install 'scorebus\[parquet\]'"):
        FileSink(f"file://{tmp_path}/pq?format=parquet")
    assert isinstance(FileSink(f"file://{tmp_path}/j"), FileSink)  # jsonl needs no pyarrow


def test_an_outbox_is_refused_not_dropped(tmp_path: Path) -> None:
    event = Event.new("scored", b"{}")
    outbox = [OutboxEvent(topic="scores", key="e1", scorer="s", event=event)]

    async def scenario() -> None:
        sink = FileSink(f"file://{tmp_path}/out")
        await sink.open()
        try:
            with pytest.raises(ConfigError, match="cannot hold an outbox"):
                await sink.write([_result("e1")], outbox)
        finally:
            await sink.close()

    asyncio.run(scenario())
    assert _jsonl_rows(tmp_path / "out") == []


def test_a_failed_write_leaves_no_half_line_and_can_be_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    calls = {"n": 0}

    def disk_fills_up(fd: int, data: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            real_write(fd, bytes(data[:17]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    async def scenario() -> None:
        sink = FileSink(f"file://{tmp_path}/out")
        await sink.open()
        try:
            assert await sink.write([_result("e1")]) == 1
            monkeypatch.setattr(files_module.os, "write", disk_fills_up)
            with pytest.raises(SinkUnavailable, match="No space left"):
                await sink.write([_result("e2"), _result("e3")])
            assert await sink.write([_result("e2"), _result("e3")]) == 2
        finally:
            await sink.close()

    asyncio.run(scenario())
    assert [r["event_id"] for r in _jsonl_rows(tmp_path / "out")] == ["e1", "e2", "e3"]


_KILLED_WRITER = """
import asyncio, os, signal, sys, time
from scorebus.sinks.base import ScoreResult
from scorebus.sinks.files import FileSink

async def main():
    sink = FileSink(sys.argv[1])
    await sink.open()
    now = time.time()
    await sink.write([ScoreResult(scorer="s", event_id=f"k{i}", model="m", model_version="1",
        output=b"1", event_time=now, scored_at=now, latency_ms=0.0, service_ms=0.0)
        for i in range(4)])
    os.kill(os.getpid(), signal.SIGKILL)  # no close(): the part is left as it is

asyncio.run(main())
"""


def test_a_killed_writers_parquet_journal_is_converted_by_the_next_sink(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/pq?format=parquet"
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_KILLED_WRITER), url],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == -9, proc.stderr.decode()
    assert len(list((tmp_path / "pq").glob("*.parquet.journal"))) == 1

    counts = asyncio.run(_write_all(url, [_result("k1"), _result("k9")]))

    assert counts == [1]
    assert not list((tmp_path / "pq").glob("*.journal"))
    assert sorted(r["event_id"] for r in _parquet_rows(tmp_path / "pq")) == [
        "k0",
        "k1",
        "k2",
        "k3",
        "k9",
    ]


def test_a_torn_last_line_is_cut_only_when_its_writer_is_gone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    url = f"file://{out}"

    async def scenario() -> None:
        live = FileSink(url)
        await live.open()
        await live.write([_result("a")])
        (live_part,) = out.glob("part-*.jsonl")
        dead_part = out / "part-19700101T000000-dead-1-0000-00000.jsonl"
        dead_part.write_bytes(msgspec.json.encode({"scorer": "s", "event_id": "d"}) + b'\n{"scor')
        with open(live_part, "ab") as f:  # as if the live writer were mid-write
            f.write(b'{"scorer":"s","ev')

        other = FileSink(url)
        await other.open()
        try:
            # "d" is known (its line is whole), "a" too; the torn lines are no rows.
            assert await other.write([_result("a"), _result("d"), _result("n")]) == 1
        finally:
            await other.close()
            await live.close()
        assert dead_part.read_bytes().endswith(b"}\n")
        assert live_part.read_bytes().endswith(b'{"scorer":"s","ev')

    asyncio.run(scenario())


def test_a_foreign_line_in_a_part_is_a_config_error_naming_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "part-x.jsonl").write_bytes(b'{"scorer":"s","event_id":"a"}\nhello\n')

    with pytest.raises(ConfigError, match=r"part-x\.jsonl' line 2 is not a result row"):
        asyncio.run(FileSink(f"file://{out}").open())


class Tx(msgspec.Struct):
    amount: float


def test_a_worker_writes_its_results_to_files(tmp_path: Path) -> None:
    name = f"batch-{uuid.uuid4().hex[:6]}"
    spec = ScorerSpec(
        name=name,
        topic="tx",
        subscription=f"app.{name}",
        schema=Schema(Tx),
        fn=lambda events, _: [{"double": e.amount * 2} for e in events],
        sink=f"file://{tmp_path}/results?format=parquet",
        batch=Batch(max_size=16, max_wait_ms=5),
        result_type="app.scored",
    )
    events = [Event.new("tx", {"amount": float(i)}) for i in range(50)]

    async def scenario() -> None:
        async with SqliteBroker(f"sqlite:///{tmp_path}/bus.db") as broker:
            await broker.publish("tx", events)
            worker = Worker([spec], broker=broker, store_url="unused://", shutdown_grace_s=5)
            report = await worker.run(until_idle_s=0.3)
            assert report.scored == 50

    asyncio.run(scenario())
    rows = _parquet_rows(tmp_path / "results")
    assert sorted(r["event_id"] for r in rows) == sorted(e.id for e in events)
    by_id = {r["event_id"]: json.loads(r["output"]) for r in rows}
    assert by_id[events[7].id] == {"double": 14.0}
