"""Crash safety: workers SIGKILLed at random moments lose nothing and store nothing twice.

20,000 demo transactions (about 2% malformed) are published, then two separate
``scorebus run`` worker processes compete for them. Each is killed with SIGKILL
three times at a random moment while it is scoring and restarted; finally both
run with ``--until-idle`` until the queue is empty. Afterwards every valid event
has exactly one result, every malformed one is dead-lettered with its reason,
nothing is pending or in flight, and no event is both scored and dead-lettered.

The test runs its own app module, a mirror of ``scorebus.demo``'s scorer (same
topic, schema, model and size limit; checked below) with a 3 s lease, so that a
killed worker's leases expire, and its events are redelivered, within the test
(the demo's lease is 60 s). The mirror's scorer also sleeps a little per batch,
so that each kill lands while batches are in flight rather than after the (very
fast) work is done, and drops a marker file when its process first scores, so
that the random kill delays count from when that worker is actually working.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import IO

import pytest
from e2e_support import Cli

from scorebus.brokers.sqlite import SqliteBroker
from scorebus.demo.data import EXPECTED_REASON, Plan, chunks

EVENTS = 20_000
BAD_FRACTION = 0.02
KILLS_PER_WORKER = 3
WORKERS = 2
LEASE_S = 3
TOPIC = "transactions"
SUBSCRIPTION = "crash.fraud"

APP_SOURCE = f"""
import os
import time
from pathlib import Path

from scorebus.app import App
from scorebus.demo import FLAG_AT, MAX_EVENT_BYTES
from scorebus.models.demo import Transaction
from scorebus.runtime.config import Batch

app = App("crash")
_marked = False


@app.scorer(
    subscribe={TOPIC!r},
    schema=Transaction,
    model="fraud@champion",
    batch=Batch(max_size=128, max_wait_ms=5),
    max_event_bytes=MAX_EVENT_BYTES,
    name="fraud",
    ack_deadline_s={LEASE_S},
)
def fraud(events, scores):
    global _marked
    if not _marked:
        _marked = True
        Path(f"scoring-{{os.getpid()}}").touch()
    time.sleep(0.08)  # slow enough that a kill finds batches in flight
    return [{{"fraud_probability": s, "flagged": s >= FLAG_AT}} for s in scores.tolist()]
"""


def _publish(url: str, plan: Plan, seed: int) -> None:
    async def go() -> None:
        async with SqliteBroker(url) as broker:
            await broker.subscription(TOPIC, SUBSCRIPTION, ack_deadline_s=LEASE_S)
            for events in chunks(plan, BAD_FRACTION, seed=seed):
                await broker.publish(TOPIC, events)

    asyncio.run(go())


class Slot:
    """One worker process, killed and restarted in turn."""

    def __init__(self, cli: Cli, app_ref: str, index: int) -> None:
        self.cli = cli
        self.app_ref = app_ref
        self.index = index
        self.kills = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] | None = None
        self.started = 0.0
        self.kill_at: float | None = None

    def start(self, *extra: str) -> None:
        self.log = (self.cli.cwd / f"worker-{self.index}-{self.kills}.log").open("wb")
        self.proc = self.cli.popen(
            "run", self.app_ref, "--workers", "1", *extra,
            stdout=subprocess.DEVNULL, stderr=self.log,
        )  # fmt: skip
        self.started = time.monotonic()
        self.kill_at = None

    def close_log(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None

    def stop_hard(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.close_log()

    def log_text(self) -> str:
        path = self.cli.cwd / f"worker-{self.index}-{self.kills}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def _leased_now(cli: Cli) -> int:
    """Messages under a live lease (the broker's own count: range and per-row leases)."""

    async def in_flight() -> int:
        async with SqliteBroker(f"sqlite:///{cli.state / 'bus.db'}") as broker:
            by_name = {s.subscription: s for s in await broker.stats()}
            return by_name[SUBSCRIPTION].in_flight or 0

    return asyncio.run(in_flight())


@pytest.mark.slow
def test_sigkilled_workers_lose_nothing_and_duplicate_nothing(cli: Cli) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    why = f"(random seed {seed})"
    module = f"crash_app_{uuid.uuid4().hex[:10]}"
    (cli.cwd / f"{module}.py").write_text(APP_SOURCE)
    app_ref = f"{module}:app"

    plan = Plan(run_id=f"crash-{uuid.uuid4().hex[:8]}", total=EVENTS)
    _publish(f"sqlite:///{cli.state / 'bus.db'}", plan, seed=seed % 10_000)
    assert 0 < len(plan.bad) < EVENTS * 0.05

    slots = [Slot(cli, app_ref, i) for i in range(WORKERS)]
    leased_at_kills: list[int] = []
    deadline = time.monotonic() + 70
    try:
        for slot in slots:
            slot.start()
        while any(s.kills < KILLS_PER_WORKER for s in slots):
            assert time.monotonic() < deadline, f"the kill phase overran {why}"
            for slot in slots:
                if slot.kills >= KILLS_PER_WORKER:
                    continue
                assert slot.proc is not None
                assert slot.proc.poll() is None, (
                    f"worker {slot.index} exited by itself ({slot.proc.returncode}) {why}:\n"
                    + slot.log_text()
                )
                now = time.monotonic()
                if slot.kill_at is None:
                    scoring = (cli.cwd / f"scoring-{slot.proc.pid}").exists()
                    # Nothing left to score for a late restart: kill it anyway.
                    if scoring or now - slot.started > 15:
                        slot.kill_at = now + rng.uniform(0.3, 1.5)
                elif now >= slot.kill_at:
                    slot.proc.send_signal(signal.SIGKILL)
                    assert slot.proc.wait(timeout=30) == -signal.SIGKILL
                    slot.close_log()
                    leased_at_kills.append(_leased_now(cli))
                    slot.kills += 1
                    if slot.kills < KILLS_PER_WORKER:
                        slot.start()
            time.sleep(0.02)

        # Some kill must have caught leased, unacked work, or nothing was tested.
        assert sum(leased_at_kills) > 0, f"no kill found work in flight {why}"
        ((left,),) = cli.query(
            "bus.db", "SELECT COUNT(*) FROM messages WHERE subscription = ?", [SUBSCRIPTION]
        )
        print(f"leased at each kill: {leased_at_kills}; {left} messages left for the final run")

        for slot in slots:
            slot.start("--until-idle", "3")
        for slot in slots:
            assert slot.proc is not None
            rc = slot.proc.wait(timeout=90)
            slot.close_log()
            log = slot.log_text()
            assert rc == 0, f"final worker {slot.index} exited {rc} {why}:\n{log}"
            assert "Traceback" not in log, log
    finally:
        for slot in slots:
            slot.stop_hard()

    status = cli.json("status", "--json")
    (sub,) = [s for s in status["subscriptions"] if s["subscription"] == SUBSCRIPTION]
    assert (sub["pending"], sub["in_flight"]) == (0, 0), f"{sub} {why}"
    assert cli.query(
        "bus.db", "SELECT COUNT(*) FROM messages WHERE subscription = ?", [SUBSCRIPTION]
    ) == [(0,)], why

    scored = [
        r[0]
        for r in cli.query(
            "scores.db",
            "SELECT event_id FROM results WHERE scorer = 'fraud' AND event_id LIKE ?",
            [f"{plan.run_id}-%"],
        )
    ]
    letters = cli.query(
        "bus.db",
        "SELECT event_id, reason FROM dead_letters WHERE subscription = ?",
        [SUBSCRIPTION],
    )
    valid = {f"{plan.run_id}-{i:07d}" for i in range(EVENTS)} - set(plan.bad)

    assert len(scored) == len(set(scored)), f"an event has two results {why}"
    missing = valid - set(scored)
    assert not missing, (
        f"{len(missing)} valid events have no result, e.g. {sorted(missing)[:3]} {why}"
    )
    assert set(scored) == valid, f"a malformed event was scored {why}"
    dead = dict(letters)
    assert len(letters) == len(dead), f"an event was dead-lettered twice {why}"
    assert set(dead) == set(plan.bad), (
        f"dead letters differ: missing {sorted(set(plan.bad) - set(dead))[:3]}, "
        f"unexpected {sorted(set(dead) - set(plan.bad))[:3]} {why}"
    )
    wrong = {e: r for e, r in dead.items() if r != EXPECTED_REASON[plan.bad[e]]}
    assert not wrong, f"wrong reasons: {list(wrong.items())[:3]} {why}"
    assert not set(scored) & set(dead), f"an event was both scored and dead-lettered {why}"
    ((model_versions,),) = cli.query(
        "scores.db", "SELECT COUNT(DISTINCT model || '@' || model_version) FROM results"
    )
    assert model_versions == 1


def test_the_crash_app_module_mirrors_the_demo_scorer(tmp_path: Path) -> None:
    """The test's own app is the demo's scorer with a short lease, nothing else."""
    from scorebus.demo import app as demo_app

    namespace: dict[str, object] = {}
    exec(compile(APP_SOURCE, str(tmp_path / "crash_app.py"), "exec"), namespace)
    (mine,) = namespace["app"].scorers  # type: ignore[attr-defined]
    (theirs,) = demo_app.scorers
    assert mine.topic == theirs.topic
    assert mine.schema.type is theirs.schema.type
    assert mine.schema.max_bytes == theirs.schema.max_bytes
    assert mine.model == theirs.model
    assert mine.name == theirs.name
    assert mine.ack_deadline_s == LEASE_S < theirs.ack_deadline_s
