"""Run the AI-workflow loop end to end on the embedded broker, printing each step.

    python -m examples.workflows.run [--workdir DIR]

1. Day 1: a small labelled dataset lands (``data.arrived``): v1 is trained and
   promoted (there is no champion yet). The scorer starts on ``fraud@champion``.
2. Day 2: a month of labelled data lands: v2 is trained, beats v1 on the
   holdout and is promoted; the running scorer swaps to it (``model.swapped``).
3. The world shifts: amounts arrive tripled (a currency change upstream). The
   drift job compares the traffic with v2's training data: ``drift.detected``
   names ``amount``.
4. Re-training on the recent labelled (shifted) data gives v3, which beats v2 on
   the new holdout: promoted, swapped in, and the drift job now watches v3.
5. Every transaction has exactly one result, nothing is left pending and nothing
   was dead-lettered.

Everything runs in this process: one worker (the scorer and every handler) on
``DIR/bus.db``, results in ``DIR/scores.db``, the registry in ``DIR/models``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scorebus.brokers.base import DeadLetter, SubscriptionStats
from scorebus.brokers.sqlite import SqliteBroker
from scorebus.events import Event
from scorebus.events.codec import decode_json
from scorebus.models.demo import synthetic_transactions
from scorebus.models.registry import Registry
from scorebus.runtime.worker import Worker, WorkerReport
from scorebus.sinks.sqlite import SqliteResultStore
from scorebus.workflows import DATA_ARRIVED, DRIFT_DETECTED, MODEL_PROMOTED

from .fit import write_dataset
from .narrate import describe
from .pipeline import DRIFT_EVERY, HOLDOUT, RECENT, TOPIC, WORKDIR, build_app

SCORER = "fraud"
SWAPPED = "model.swapped"
WATCH = "loop-watch"  # this script's own subscription to the lifecycle events
MARKER = ".workflows-demo"  # what lets a second run clear the folder of the first
MODEL_POLL_S = 0.2
CHUNK = 25
AMOUNT_FACTOR = 3.0


class LoopError(Exception):
    """A step of the loop did not happen in time."""


@dataclass
class LoopRecord:
    """What a run saw, for the checks that follow it.

    Attributes:
        workdir: where the bus, the results, the registry and the data live.
        events: the lifecycle events (data, models, drift, swaps) in the order seen.
        sent: every transaction published, in order.
        marks: how many transactions were sent when each step began: ``day2`` (the
            second dataset published), ``v2`` and ``v3`` (the scorer's swap seen),
            ``shift`` (the first tripled amount).
        bootstrap: the report of the worker that trained v1 (no scorer yet).
        report: the report of the worker that ran the rest.
        stats: every subscription at the end.
        dead_letters: what was dead-lettered.
    """

    workdir: Path
    events: list[Event] = field(default_factory=list)
    sent: list[Event] = field(default_factory=list)
    marks: dict[str, int] = field(default_factory=dict)
    bootstrap: WorkerReport | None = None
    report: WorkerReport | None = None
    stats: list[SubscriptionStats] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def of(self, type_: str) -> list[Event]:
        return [e for e in self.events if e.type == type_]


class _Loop:
    def __init__(
        self, workdir: Path, broker: SqliteBroker, say: Callable[[str], None], timeout_s: float
    ) -> None:
        self.workdir = workdir
        self.app = build_app(workdir)
        self.registry = Registry(workdir / "models")
        self.broker = broker
        self.store = SqliteResultStore(f"sqlite:///{workdir}/scores.db")
        self.say = say
        self.timeout_s = timeout_s
        self.record = LoopRecord(workdir)
        self.started = time.monotonic()
        self.seed = 1000  # of the next chunk of transactions
        self.watcher: Any = None

    def tell(self, line: str) -> None:
        self.say(f"[{time.monotonic() - self.started:5.1f}s] {line}")

    def worker(self, *, scorers: bool) -> Worker:
        return Worker(
            self.app.scorers if scorers else [],
            self.app.handlers,
            broker=self.broker,
            store_url=self.store.url,
            resolve_model=self.registry.load,
            resolve_version=lambda ref: self.registry.resolve(ref).version,
            model_poll_s=MODEL_POLL_S,
            model_threads=2,
            shutdown_grace_s=10.0,
        )

    async def watch(self, timeout_s: float) -> None:
        """Take the lifecycle events published so far (waiting up to ``timeout_s``)."""
        got = await self.watcher.pull(100, timeout_s)
        await self.watcher.ack(got)
        for delivery in got:
            event = delivery.event
            if isinstance(event.data, bytes | str):
                event = event.with_data(decode_json(event.data))
            self.record.events.append(event)
            self.tell(describe(event))

    async def send(self, n: int, *, shifted: bool = False) -> None:
        rows = synthetic_transactions(n, seed=self.seed)
        self.seed += 1
        for row in rows:
            if shifted:
                row["amount"] = round(row["amount"] * AMOUNT_FACTOR, 2)
        events = [Event.new(TOPIC, row, source="examples/workflows") for row in rows]
        await self.broker.publish(TOPIC, events)
        self.record.sent.extend(events)

    async def until(
        self, what: str, done: Callable[[], bool], *, traffic: bool | None = None
    ) -> None:
        """Watch (and keep transactions flowing unless ``traffic`` is None) until ``done()``."""
        give_up = time.monotonic() + self.timeout_s
        while not done():
            if time.monotonic() > give_up:
                raise LoopError(f"{what}: not seen within {self.timeout_s:g} s")
            if traffic is not None:
                await self.send(CHUNK, shifted=traffic)
            await self.watch(0.05)

    async def drain(self) -> None:
        """Wait until every transaction is scored and every subscription is empty."""
        give_up = time.monotonic() + self.timeout_s
        while True:
            scored = (await self.store.counts()).get(SCORER, 0)
            busy = [
                s.subscription
                for s in await self.broker.stats()
                if s.subscription != WATCH and (s.pending or s.in_flight)
            ]
            if scored >= len(self.record.sent) and not busy:
                by_version = Counter(
                    r.model_version for r in await self.store.results(scorer=SCORER, limit=scored)
                )
                counts = ", ".join(f"v{v} {n}" for v, n in sorted(by_version.items()))
                self.tell(f"scored  {scored} transactions so far, by version: {counts}")
                return
            if time.monotonic() > give_up:
                raise LoopError(f"{scored} of {len(self.record.sent)} scored; busy: {busy}")
            await self.watch(0.05)

    def promoted(self, version: str) -> bool:
        return any(e.data["version"] == version for e in self.record.of(MODEL_PROMOTED))

    def swapped(self, version: str) -> bool:
        return any(e.data["to_version"] == version for e in self.record.of(SWAPPED))

    async def arrived(self, name: str, rows: int, seed: int) -> None:
        dataset = write_dataset(self.workdir / "data" / name, rows=rows, seed=seed)
        await self.broker.publish(
            self.app.events_topic, [Event.new(DATA_ARRIVED, {"dataset": dataset})]
        )

    async def play(self) -> LoopRecord:
        record, work = self.record, self.workdir
        # Every subscription exists before the first publish, so each gets every event.
        for topic, subscription in self.app.subscriptions():
            await self.broker.subscription(topic, subscription)
        self.watcher = await self.broker.subscription(self.app.events_topic, WATCH)
        await self.store.open()
        write_dataset(work / HOLDOUT, rows=4000, seed=99)

        self.say("Day 1: 500 labelled transactions land; no model exists yet.")
        await self.arrived("day1.csv", rows=500, seed=1)
        # The scorer needs a champion to start: the handlers alone train v1 first.
        record.bootstrap = await self.worker(scorers=False).run(
            until_idle_s=0.3, handle_signals=False
        )
        await self.until("fraud v1 promoted", lambda: self.promoted("1"))

        self.say("The scorer starts on fraud@champion (v1); transactions flow.")
        worker = self.worker(scorers=True)
        running = asyncio.create_task(worker.run(handle_signals=False))
        try:
            await self.send(300)
            await self.drain()
            record.marks["day2"] = len(record.sent)
            self.say("Day 2: 8,000 more labelled transactions land.")
            await self.arrived("day2.csv", rows=8000, seed=2)
            await self.until("the scorer on v2", lambda: self.swapped("2"), traffic=False)
            record.marks["v2"] = len(record.sent)
            await self.send(2 * DRIFT_EVERY + CHUNK)
            await self.drain()

            self.say("The world shifts: amounts now arrive x3. Recent labels and holdout follow.")
            write_dataset(work / RECENT, rows=8000, seed=3, amount_factor=AMOUNT_FACTOR)
            write_dataset(work / HOLDOUT, rows=4000, seed=98, amount_factor=AMOUNT_FACTOR)
            record.marks["shift"] = len(record.sent)
            await self.until(
                "drift.detected", lambda: bool(record.of(DRIFT_DETECTED)), traffic=True
            )
            await self.until("the scorer on v3", lambda: self.swapped("3"), traffic=True)
            record.marks["v3"] = len(record.sent)
            await self.send(2 * DRIFT_EVERY + CHUNK, shifted=True)
            await self.drain()
        finally:
            worker.request_stop()
            record.report = await running
            await self.store.close()
        await self.watch(0.05)
        record.stats = await self.broker.stats()
        record.dead_letters = await self.broker.dead_letters()
        return record


async def run_loop(
    workdir: Path | str, *, say: Callable[[str], None] = print, timeout_s: float = 60.0
) -> LoopRecord:
    """Play the loop in ``workdir`` (which should be empty) and return what it saw.

    Raises:
        LoopError: a step did not happen within ``timeout_s``.
    """
    root = Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    async with SqliteBroker(f"sqlite:///{root}/bus.db") as broker:
        return await _Loop(root, broker, say, timeout_s).play()


def summary(record: LoopRecord) -> list[str]:
    """The end-of-run checks, one line each."""
    registry = Registry(record.workdir / "models")
    report = record.report or WorkerReport()
    pending = sum((s.pending or 0) + s.in_flight for s in record.stats)
    return [
        f"champion: fraud v{registry.resolve('fraud@champion').version} "
        f"(versions {', '.join(registry.versions('fraud'))})",
        f"transactions: {len(record.sent)} published, {report.scored} scored, "
        f"{report.dead_lettered} dead-lettered, {report.retried} retried",
        f"broker: {pending} pending or in flight, {len(record.dead_letters)} dead letters",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workdir", type=Path, default=WORKDIR, help=f"default {WORKDIR}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="         log: %(message)s")
    workdir: Path = args.workdir
    if workdir.exists() and any(workdir.iterdir()):
        if not (workdir / MARKER).exists():
            print(f"error: {workdir} is not empty; pass --workdir with an empty or new folder")
            return 2
        shutil.rmtree(workdir)  # the previous run's: the loop starts from nothing
    workdir.mkdir(parents=True)
    (workdir / MARKER).touch()
    try:
        record = asyncio.run(run_loop(workdir))
    except LoopError as exc:
        print(f"error: {exc}")
        return 1
    for line in summary(record):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
