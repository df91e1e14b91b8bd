"""The PostgreSQL store against the real server: what the sink contract does not
cover (error translation, a connection cut mid-run, concurrent writers, a worker
end to end). The contract itself runs through ``tests/contract/backend_postgres.py``."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from tests.contract.backend_postgres import drop_tables, pg_url

from scorebus.brokers.sqlite import SqliteBroker
from scorebus.errors import ConfigError, SinkUnavailable
from scorebus.events import Event, Schema
from scorebus.models.base import Signature
from scorebus.runtime.config import Batch
from scorebus.runtime.spec import ScorerSpec
from scorebus.runtime.worker import Worker
from scorebus.sinks import open_sink, open_store
from scorebus.sinks.base import OutboxEvent, ScoreResult
from scorebus.sinks.postgres import PostgresResultStore


@pytest.fixture
def tables() -> Iterator[tuple[str, str]]:
    tag = uuid.uuid4().hex[:10]
    names = (f"sbi_{tag}_r", f"sbi_{tag}_o")
    yield names
    drop_tables(set(names))


def _result(scorer: str, event_id: str) -> ScoreResult:
    now = time.time()
    return ScoreResult(
        scorer=scorer,
        event_id=event_id,
        model="m",
        model_version="1",
        output=b'{"score":0.5}',
        event_time=now,
        scored_at=now,
        latency_ms=1.0,
        service_ms=1.0,
    )


def _outbox(scorer: str, event_id: str) -> OutboxEvent:
    event = Event.new("scored", b"{}", caused_by=Event(id=event_id, type="tx"))
    return OutboxEvent(topic="scores", key=event_id, scorer=scorer, event=event)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_open_sink_builds_a_readable_store_from_the_url(tables: tuple[str, str]) -> None:
    url = pg_url(table=tables[0], outbox=tables[1], sslmode="disable")
    store = open_store(url)
    legacy = open_sink(url.replace("postgresql://", "postgres://"))

    assert isinstance(store, PostgresResultStore)
    assert isinstance(legacy, PostgresResultStore)
    # Our options are ours; the rest (sslmode) is left for libpq/asyncpg.
    assert (store.results_table, store.outbox_table) == (f'"{tables[0]}"', f'"{tables[1]}"')
    assert "sslmode=disable" in store._dsn and "table=" not in store._dsn


@pytest.mark.parametrize(
    "option",
    ["table=results;drop", "outbox=1abc", "table=a.b.c", "pool_size=0", "connect_timeout=soon"],
)
def test_bad_options_are_config_errors(option: str) -> None:
    with pytest.raises(ConfigError, match=r"bad .*"):
        PostgresResultStore(f"postgresql://u@127.0.0.1/db?{option}")
    with pytest.raises(ConfigError, match=r"bad PostgreSQL URL"):
        PostgresResultStore("postgresql://u@127.0.0.1:port/db")


def test_a_refused_connection_names_the_server_but_not_the_password() -> None:
    port = _free_port()
    store = PostgresResultStore(f"postgresql://scorer:s3cret@127.0.0.1:{port}/scores")

    with pytest.raises(SinkUnavailable) as info:
        asyncio.run(store.open())

    message = str(info.value)
    assert f"PostgreSQL at 127.0.0.1:{port}/scores" in message
    assert "check the server is running" in message
    assert "s3cret" not in message
    assert info.value.retry_after_s == 1.0


def test_a_missing_database_or_role_is_a_config_error() -> None:
    missing_db = pg_url(database=f"nope_{uuid.uuid4().hex[:6]}")
    missing_role = pg_url().replace("postgres@", f"ghost{uuid.uuid4().hex[:6]}:pw@")

    with pytest.raises(ConfigError, match=r"does not exist: create the database"):
        asyncio.run(PostgresResultStore(missing_db).open())
    with pytest.raises(ConfigError, match=r"refused user 'ghost.*check the user and password"):
        asyncio.run(PostgresResultStore(missing_role).open())


def test_a_user_granted_only_the_tables_can_use_them(tables: tuple[str, str]) -> None:
    role = f"sbt_role_{uuid.uuid4().hex[:8]}"
    admin = PostgresResultStore(pg_url(table=tables[0], outbox=tables[1]))

    async def scenario() -> None:
        await admin.open()  # creates the tables
        assert admin._pool is not None
        await admin._pool.execute(
            f'CREATE ROLE {role} LOGIN; GRANT SELECT, INSERT, DELETE ON "{tables[0]}",'
            f' "{tables[1]}" TO {role}'
        )
        try:
            url = pg_url(table=tables[0], outbox=tables[1]).replace("postgres@", f"{role}@")
            store = PostgresResultStore(url)
            await store.open()
            try:
                assert await store.write([_result("s", "e1")], [_outbox("s", "e1")]) == 1
                pending = await store.outbox_pending()
                await store.outbox_done([i for i, _ in pending])
                assert await store.counts() == {"s": 1}
                assert await store.outbox_size() == 0
            finally:
                await store.close()
            # Without the tables, the same user is told what to grant.
            other = PostgresResultStore(url.replace(tables[0], f"{tables[0]}_x"))
            with pytest.raises(ConfigError, match=r"lacks a privilege .*grant CREATE"):
                await other.open()
        finally:
            await admin._pool.execute(
                f'REVOKE ALL ON "{tables[0]}", "{tables[1]}" FROM {role}; DROP ROLE {role}'
            )
            await admin.close()

    asyncio.run(scenario())


def test_a_store_that_is_not_open_says_so(tables: tuple[str, str]) -> None:
    store = PostgresResultStore(pg_url(table=tables[0], outbox=tables[1]))

    with pytest.raises(ConfigError, match="not open"):
        asyncio.run(store.write([_result("s", "e1")]))


class Proxy:
    """A TCP proxy to the server that the test can cut and restore."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = _free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Drop every connection and refuse new ones."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in self._writers:
            w.transport.abort()
        self._writers.clear()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        await asyncio.sleep(0)  # let the aborted transports close their sockets

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        for task in (
            asyncio.create_task(pipe(reader, up_writer)),
            asyncio.create_task(pipe(up_reader, writer)),
        ):
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)


@contextlib.asynccontextmanager
async def _proxied_store(tables: tuple[str, str]) -> AsyncIterator[tuple[Proxy, Any]]:
    target = int(pg_url().rsplit(":", 1)[1].split("/")[0])
    proxy = Proxy(target)
    await proxy.start()
    url = f"postgresql://postgres@127.0.0.1:{proxy.port}/test?table={tables[0]}&outbox={tables[1]}"
    store = PostgresResultStore(url + "&connect_timeout=2")
    await store.open()
    try:
        yield proxy, store
    finally:
        await store.close()
        await proxy.cut()


def test_a_connection_lost_mid_run_is_transient_and_loses_nothing(
    tables: tuple[str, str],
) -> None:
    async def scenario() -> None:
        async with _proxied_store(tables) as (proxy, store):
            assert await store.write([_result("s", "e1")], [_outbox("s", "e1")]) == 1

            await proxy.cut()
            with pytest.raises(SinkUnavailable, match=r"PostgreSQL at 127\.0\.0\.1:\d+/test"):
                await store.write([_result("s", "e2")], [_outbox("s", "e2")])

            # The runtime retries the batch (with e1 redelivered beside it) once
            # the server is back; the pool reconnects by itself.
            await proxy.start()
            batch = [_result("s", "e1"), _result("s", "e2")]
            assert await store.write(batch, [_outbox("s", "e1"), _outbox("s", "e2")]) == 1
            assert sorted(await store.event_ids("s")) == ["e1", "e2"]
            assert [o.key for _, o in await store.outbox_pending()] == ["e1", "e2"]

    asyncio.run(scenario())


def test_competing_writers_store_and_outbox_each_key_once(tables: tuple[str, str]) -> None:
    url = pg_url(table=tables[0], outbox=tables[1])

    async def scenario() -> None:
        stores = [PostgresResultStore(url) for _ in range(4)]
        await asyncio.gather(*(s.open() for s in stores))
        try:
            ids = [f"e{i:04d}" for i in range(400)]

            async def writer(store: PostgresResultStore, k: int) -> int:
                # Overlapping windows: every id is written by two or three writers.
                total = 0
                for start in range(k * 50, min(len(ids), k * 50 + 250), 50):
                    chunk = ids[start : start + 50]
                    total += await store.write(
                        [_result("s", i) for i in chunk], [_outbox("s", i) for i in chunk]
                    )
                return total

            written = await asyncio.gather(*(writer(s, k) for k, s in enumerate(stores)))

            covered = {i for k in range(4) for i in ids[k * 50 : k * 50 + 250]}
            assert sum(written) == len(covered)
            assert await stores[0].audit("s") == (len(covered), len(covered))
            keys = [o.key for _, o in await stores[0].outbox_pending(limit=10_000)]
            assert sorted(keys) == sorted(covered)
        finally:
            await asyncio.gather(*(s.close() for s in stores))

    asyncio.run(scenario())


class Tx(msgspec.Struct):
    amount: float


class Half:
    name, version = "half", "7"
    signature = Signature(inputs=("amount",), outputs=("score",))

    def load(self) -> None:
        pass

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return batch[:, 0] / 2


def test_a_worker_stores_in_postgres_and_publishes_through_its_outbox(
    tmp_path: Path, tables: tuple[str, str]
) -> None:
    url = pg_url(table=tables[0], outbox=tables[1])
    name = f"score-{uuid.uuid4().hex[:6]}"
    spec = ScorerSpec(
        name=name,
        topic="tx",
        subscription=f"app.{name}",
        schema=Schema(Tx),
        model=Half(),
        batch=Batch(max_size=32, max_wait_ms=5),
        publish="scores",
        result_type="app.scored",
    )
    events = [Event.new("tx", {"amount": float(i)}) for i in range(100)]

    async def scenario() -> None:
        # A previous worker committed the first ten (results and outbox) and died
        # before acking them: they come round again.
        store = PostgresResultStore(url)
        await store.open()
        await store.write(
            [_result(name, e.id) for e in events[:10]], [_outbox(name, e.id) for e in events[:10]]
        )
        await store.close()
        async with SqliteBroker(f"sqlite:///{tmp_path}/bus.db") as broker:
            reader = await broker.subscription("scores", "reader")
            await broker.publish("tx", events)
            worker = Worker([spec], broker=broker, store_url=url, shutdown_grace_s=5)
            report = await worker.run(until_idle_s=0.3)

            published = []
            while got := await reader.pull(500, 0.2):
                published += got
                await reader.ack(got)
        store = PostgresResultStore(url)
        await store.open()
        try:
            rows = {r.event_id: r for r in await store.results(scorer=name, limit=1000)}
            assert set(rows) == {e.id for e in events}
            assert rows[events[10].id].output == {"score": 5.0}
            assert rows[events[9].id].output == {"score": 0.5}  # the first result is kept
            assert {(r.model, r.model_version) for r in rows.values()} == {
                ("half", "7"),
                ("m", "1"),
            }
            assert sorted(d.event.causation_id or "" for d in published) == sorted(rows)
            assert await store.outbox_size() == 0
            assert (report.scored, report.relayed) == (100, 100)
        finally:
            await store.close()

    asyncio.run(scenario())
