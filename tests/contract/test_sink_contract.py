"""The contract every results store passes: idempotent writes keyed by (scorer, event id),
an outbox committed with its results, and reading back.

Add a backend by adding a ``pytest.param`` to ``STORES``; each entry builds a fresh,
empty store for one test.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from tests.contract import backends

from scorebus.errors import ConfigError
from scorebus.events import Event
from scorebus.sinks import OutboxEvent, ResultStore, ScoreResult, Sink, open_sink
from scorebus.sinks.sqlite import SqliteResultStore

StoreFactory = Callable[[], ResultStore]

STORES = [
    pytest.param(
        lambda tmp_path: SqliteResultStore(f"sqlite:///{tmp_path}/scores.db"), id="sqlite"
    ),
    *backends.sink_params(),
]


@pytest.fixture(params=STORES)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    build = request.param
    return lambda: build(tmp_path)


def _scorer() -> str:
    return f"scorer-{uuid.uuid4().hex[:8]}"


def _result(scorer: str, event_id: str, output: object = None, version: str = "1") -> ScoreResult:
    now = time.time()
    return ScoreResult(
        scorer=scorer,
        event_id=event_id,
        model="fraud",
        model_version=version,
        output=msgspec.json.encode({"score": 0.5} if output is None else output),
        event_time=now - 0.01,
        scored_at=now,
        latency_ms=10.0,
        service_ms=2.0,
    )


def _outbox(scorer: str, event_id: str, topic: str = "scores") -> OutboxEvent:
    cause = Event(id=event_id, type="tx")
    event = Event.new(
        "scored", msgspec.json.encode({"for": event_id}), caused_by=cause, source="tests"
    )
    return OutboxEvent(topic=topic, key=event_id, scorer=scorer, event=event)


async def _opened(make_store: StoreFactory) -> ResultStore:
    store = make_store()
    await store.open()
    return store


def test_a_store_satisfies_the_protocols(make_store: StoreFactory) -> None:
    store = make_store()

    assert isinstance(store, Sink)
    assert isinstance(store, ResultStore)


def test_write_is_idempotent_and_counts_only_new_rows(make_store: StoreFactory) -> None:
    async def scenario() -> None:
        store = await _opened(make_store)
        try:
            scorer = _scorer()
            batch = [_result(scorer, f"e{i}") for i in range(3)]

            assert await store.write(batch) == 3
            assert await store.write(batch) == 0
            assert await store.write([batch[2], _result(scorer, "e3")]) == 1
            assert await store.write([]) == 0

            assert await store.counts() == {scorer: 4}
        finally:
            await store.close()

    asyncio.run(scenario())


def test_the_key_is_scorer_and_event_id(make_store: StoreFactory) -> None:
    async def scenario() -> None:
        store = await _opened(make_store)
        try:
            one, two = _scorer(), _scorer()

            assert await store.write([_result(one, "e1"), _result(two, "e1")]) == 2
            # A second result for the same key never replaces the first one.
            assert await store.write([_result(one, "e1", {"score": 0.9}, version="2")]) == 0

            assert await store.counts() == {one: 1, two: 1}
            (kept,) = await store.results(scorer=one)
            assert (kept.output, kept.model_version) == ({"score": 0.5}, "1")
        finally:
            await store.close()

    asyncio.run(scenario())


def test_results_decode_output_and_filter_by_scorer(make_store: StoreFactory) -> None:
    async def scenario() -> None:
        store = await _opened(make_store)
        try:
            one, two = _scorer(), _scorer()
            await store.write([_result(one, "a", {"score": 0.25, "flag": False})])
            await store.write([_result(one, "b", [1, 2]), _result(two, "c", 0.75)])

            mine = await store.results(scorer=one)
            everything = await store.results(limit=100)
            limited = await store.results(limit=1)

            assert {r.event_id: r.output for r in mine} == {
                "a": {"score": 0.25, "flag": False},
                "b": [1, 2],
            }
            assert {r.event_id for r in everything} == {"a", "b", "c"}
            assert next(r for r in everything if r.event_id == "c").output == 0.75
            assert len(limited) == 1
            first = mine[0]
            assert (first.scorer, first.model) == (one, "fraud")
            assert (first.latency_ms, first.service_ms) == (10.0, 2.0)
        finally:
            await store.close()

    asyncio.run(scenario())


def test_outbox_rows_are_written_with_new_results_only(make_store: StoreFactory) -> None:
    async def scenario() -> None:
        store = await _opened(make_store)
        try:
            scorer = _scorer()
            await store.write([_result(scorer, "old")])

            written = await store.write(
                [_result(scorer, "old"), _result(scorer, "new")],
                [_outbox(scorer, "old"), _outbox(scorer, "new")],
            )
            again = await store.write([_result(scorer, "new")], [_outbox(scorer, "new")])

            assert (written, again) == (1, 0)
            pending = await store.outbox_pending()
            assert [item.key for _, item in pending] == ["new"]
            (_, item) = pending[0]
            assert (item.topic, item.scorer) == ("scores", scorer)
            assert item.event.causation_id == "new"
        finally:
            await store.close()

    asyncio.run(scenario())


def test_a_key_repeated_within_one_write_gets_one_result_and_one_outbox_row(
    make_store: StoreFactory,
) -> None:
    async def scenario() -> None:
        store = await _opened(make_store)
        try:
            scorer = _scorer()
            # A redelivered event can sit in the same batch as its first delivery.
            out = _outbox(scorer, "e1")

            written = await store.write(
                [_result(scorer, "e1"), _result(scorer, "e2"), _result(scorer, "e1")],
                [out, _outbox(scorer, "e2"), out],
            )

            assert written == 2
            assert await store.counts() == {scorer: 2}
            keys = [item.key for _, item in await store.outbox_pending()]
            assert sorted(keys) == ["e1", "e2"]
        finally:
            await store.close()

    asyncio.run(scenario())


def test_outbox_events_come_back_intact(make_store: StoreFactory) -> None:
    async def scenario() -> None:
        store = await _opened(make_store)
        try:
            scorer = _scorer()
            out = _outbox(scorer, "e1", topic="scored-events")

            await store.write([_result(scorer, "e1")], [out])

            ((_, back),) = await store.outbox_pending()
            assert back == out
            assert back.event.data == msgspec.json.encode({"for": "e1"})
        finally:
            await store.close()

    asyncio.run(scenario())


def test_a_failed_write_commits_neither_results_nor_outbox(make_store: StoreFactory) -> None:
    async def scenario() -> None:
        store = await _opened(make_store)
        try:
            scorer = _scorer()
            good = _outbox(scorer, "e1")
            unencodable = OutboxEvent(
                topic="scores",
                key="e2",
                scorer=scorer,
                event=Event(id="x", type="scored", data=object()),
            )

            with pytest.raises(TypeError):
                await store.write(
                    [_result(scorer, "e1"), _result(scorer, "e2")], [good, unencodable]
                )

            assert await store.counts() == {}
            assert await store.outbox_pending() == []
            # The failed write left nothing behind that would block a retry.
            assert await store.write([_result(scorer, "e1")], [good]) == 1
            assert len(await store.outbox_pending()) == 1
        finally:
            await store.close()

    asyncio.run(scenario())


def test_outbox_pending_and_done(make_store: StoreFactory) -> None:
    async def scenario() -> None:
        store = await _opened(make_store)
        try:
            scorer = _scorer()
            ids = [f"e{i}" for i in range(5)]
            await store.write([_result(scorer, i) for i in ids], [_outbox(scorer, i) for i in ids])

            first = await store.outbox_pending(limit=2)
            assert [item.key for _, item in first] == ["e0", "e1"]
            await store.outbox_done([row_id for row_id, _ in first])
            await store.outbox_done([])

            rest = await store.outbox_pending()
            assert [item.key for _, item in rest] == ["e2", "e3", "e4"]
            await store.outbox_done([row_id for row_id, _ in rest])
            assert await store.outbox_pending() == []
        finally:
            await store.close()

    asyncio.run(scenario())


def test_outbox_batches_are_claimed_by_one_relay_at_a_time(make_store: StoreFactory) -> None:
    """Two relays (two worker processes' stores) never get the same outbox row."""

    async def scenario() -> None:
        one, two = await _opened(make_store), await _opened(make_store)
        try:
            scorer = _scorer()
            ids = [f"e{i}" for i in range(5)]
            await one.write([_result(scorer, i) for i in ids], [_outbox(scorer, i) for i in ids])

            async with one.outbox_batch(limit=3) as first, two.outbox_batch(limit=10) as second:
                assert [item.key for _, item in first] == ["e0", "e1", "e2"]
                assert [item.key for _, item in second] == ["e3", "e4"]
            assert await one.outbox_pending() == []  # a clean exit deletes them

            await one.write([_result(scorer, "e9")], [_outbox(scorer, "e9")])
            with pytest.raises(RuntimeError):
                async with two.outbox_batch() as failed:
                    assert [item.key for _, item in failed] == ["e9"]
                    raise RuntimeError("the broker refused the publish")
            async with one.outbox_batch() as again:  # released by the error
                assert [item.key for _, item in again] == ["e9"]
            assert await two.outbox_pending() == []
        finally:
            await one.close()
            await two.close()

    asyncio.run(scenario())


def test_counts_per_scorer(make_store: StoreFactory) -> None:
    async def scenario() -> None:
        store = await _opened(make_store)
        try:
            one, two = _scorer(), _scorer()
            assert await store.counts() == {}

            await store.write([_result(one, f"e{i}") for i in range(3)])
            await store.write([_result(two, "e0")])

            assert await store.counts() == {one: 3, two: 1}
        finally:
            await store.close()

    asyncio.run(scenario())


def test_results_survive_close_and_reopen(make_store: StoreFactory) -> None:
    scorer = _scorer()

    async def write() -> None:
        store = await _opened(make_store)
        try:
            await store.write([_result(scorer, "e1")], [_outbox(scorer, "e1")])
        finally:
            await store.close()

    async def read() -> None:
        store = await _opened(make_store)
        try:
            assert await store.counts() == {scorer: 1}
            assert len(await store.outbox_pending()) == 1
            assert await store.write([_result(scorer, "e1")]) == 0
        finally:
            await store.close()

    asyncio.run(write())
    asyncio.run(read())


def test_open_sink_knows_its_schemes(tmp_path: Path) -> None:
    assert isinstance(open_sink(f"sqlite:///{tmp_path}/s.db"), SqliteResultStore)
    with pytest.raises(ConfigError, match="valid schemes are sqlite://"):
        open_sink("mongodb://localhost/db")
