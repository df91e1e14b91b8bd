"""The contract every broker passes with real worker processes.

Two competing workers share a subscription; one is killed with SIGKILL in the
middle of the run and replaced. Afterwards every valid event has exactly one
result, every malformed one is dead-lettered with its reason, and nothing is
pending. Backends join with a ``URL`` param in ``tests/contract/backend_<name>.py``.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.contract import backends

from scorebus.app import Settings
from scorebus.app.run import WorkerPool
from scorebus.brokers import open_broker
from scorebus.demo.data import EXPECTED_REASON, Plan, chunks
from scorebus.models.demo import ensure_demo_model
from scorebus.models.registry import Registry

URLS = [
    pytest.param(lambda tmp_path: f"sqlite:///{tmp_path}/bus.db", id="sqlite"),
    *backends.url_params(),
]

APP = """
from scorebus import App, Batch
from scorebus.models.demo import Transaction

app = App("{app}")

@app.scorer(subscribe="{topic}", schema=Transaction, model="fraud@champion",
            batch=Batch(max_size=128, max_wait_ms=5), max_event_bytes=16384,
            ack_deadline_s=2.0, name="fraud")
def fraud(events, scores):
    return [{{"p": s}} for s in scores.tolist()]
"""


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("registry")
    ensure_demo_model(Registry(root))
    return root


@pytest.fixture(params=URLS)
def broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    build: Callable[[Path], str] = request.param
    return build(tmp_path)


async def _publish(url: str, topic: str, subscription: str, plan: Plan) -> None:
    async with open_broker(url) as broker:
        # The app's lease, so a worker killed before it shortens a lease holds it no longer.
        await broker.subscription(topic, subscription, ack_deadline_s=2.0)
        for events in chunks(plan, 0.03, seed=5, size=1000):
            await broker.publish(topic, events)


async def _finish(
    url: str, subscription: str, run_id: str
) -> tuple[int | None, int, dict[str, str]]:
    async with open_broker(url) as broker:
        stats = {s.subscription: s for s in await broker.stats()}[subscription]
        letters = await broker.dead_letters(subscription=subscription, limit=100_000)
    reasons = {d.event_id: d.reason for d in letters if d.event_id.startswith(run_id)}
    return stats.pending, stats.in_flight, reasons


def _results(store: Path) -> tuple[int, int]:
    if not store.exists():
        return 0, 0
    with sqlite3.connect(store) as conn:
        try:
            rows, distinct = conn.execute(
                "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM results WHERE scorer = 'fraud'"
            ).fetchone()
        except sqlite3.OperationalError:  # the worker has created the file, not yet the table
            return 0, 0
    return int(rows), int(distinct)


def test_competing_workers_survive_sigkill_with_exactly_once_results(
    broker_url: str, registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uid = uuid.uuid4().hex[:8]
    topic, app_name = f"tx-{uid}", f"wc{uid}"
    (tmp_path / f"wc_{uid}.py").write_text(APP.format(app=app_name, topic=topic))
    monkeypatch.chdir(tmp_path)
    subscription = f"{app_name}.fraud"
    plan = Plan(run_id=f"wc-{uid}", total=4000)
    asyncio.run(_publish(broker_url, topic, subscription, plan))

    store = tmp_path / "scores.db"
    settings = Settings(broker=broker_url, store=f"sqlite:///{store}", registry=registry)
    pool = WorkerPool(f"wc_{uid}:app", settings, workers=2, until_idle_s=4.0, grace_s=20).start()
    pools = [pool]
    try:
        deadline = time.monotonic() + 60
        while _results(store)[1] < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _results(store)[1] >= 300, "workers produced no results"
        pool.procs[0].send_signal(signal.SIGKILL)
        # Where the broker cannot count pending messages (Pub/Sub), idleness is all
        # the replacement can go by: it must outlast the leases the killed worker
        # held (up to the subscription's ack deadline: 10 s, Pub/Sub's shortest),
        # and once more if the other worker, stopping when idle, cancels a pull the
        # redelivered messages were already on their way to (stranded for 10 s again).
        pending, _, _ = asyncio.run(_finish(broker_url, subscription, plan.run_id))
        idle_s = 4.0 if pending is not None else 25.0
        pools.append(WorkerPool(f"wc_{uid}:app", settings, workers=1, until_idle_s=idle_s).start())
        for p in pools:
            p.wait()
    finally:
        # A failure above must not leave workers behind for the next test to trip on.
        for p in pools:
            if p.alive():
                p.stop()
                p.wait()

    rows, distinct = _results(store)
    pending, in_flight, reasons = asyncio.run(_finish(broker_url, subscription, plan.run_id))
    assert (pending or 0, in_flight) == (0, 0)  # None: the broker cannot count pending
    assert distinct == plan.valid, "every valid event has a result"
    assert rows == distinct, "no event has two results"
    assert set(reasons) == set(plan.bad), "every malformed event is dead-lettered, nothing else"
    assert all(reasons[eid] == EXPECTED_REASON[kind] for eid, kind in plan.bad.items())
