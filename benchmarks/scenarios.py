"""The scenarios `make bench` runs, side by side on the same events and model.

- limit: decode + the bare model's batched predict (no broker, no store);
- per-message: decode one event, predict one row, commit one result, ack one
  message (the original one-event-at-a-time design);
- pipeline: scorebus end to end on the embedded broker (publish done before;
  consume, validate, score, store, ack), in one and in several processes;
- open loop: events published at a fixed rate (half the measured capacity),
  latency from each event's scheduled time, so queueing is not hidden.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import sqlite3
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from scorebus.app import Settings
from scorebus.app.run import WorkerPool, run_app
from scorebus.brokers import open_broker
from scorebus.demo import SCORER, TOPIC, app
from scorebus.events import Event
from scorebus.models.demo import FEATURES, Transaction, synthetic_transactions
from scorebus.models.registry import Registry

from .common import Timer, pct

SUBSCRIPTION = f"{app.name}.{SCORER}"


def payloads(n: int, seed: int = 1) -> list[bytes]:
    rows = synthetic_transactions(n, seed=seed)
    return [msgspec.json.encode(r) for r in rows]


def limit(registry: Path, data: list[bytes], batch: int = 512) -> dict[str, float]:
    """Decode + batched predict: what the model and the decoder alone can do."""
    model = Registry(registry).load("fraud@champion")
    decode = msgspec.json.Decoder(Transaction).decode
    cols = FEATURES
    with Timer() as t:
        for i in range(0, len(data), batch):
            items = [decode(b) for b in data[i : i + batch]]
            x = np.array([[getattr(e, c) for c in cols] for e in items], dtype=np.float32)
            model.predict(x)
    return {"events": len(data), "seconds": t.seconds, "eps": len(data) / t.seconds}


def per_message(registry: Path, data: list[bytes], folder: Path) -> dict[str, float]:
    """One event at a time: decode, predict one row, commit one row, ack one message."""
    model = Registry(registry).load("fraud@champion")
    decode = msgspec.json.Decoder(Transaction).decode
    bus = sqlite3.connect(folder / "pm-bus.db", isolation_level=None)
    bus.execute("PRAGMA journal_mode=WAL")
    bus.execute("CREATE TABLE q (seq INTEGER PRIMARY KEY, data BLOB)")
    bus.executemany("INSERT INTO q (data) VALUES (?)", [(d,) for d in data])
    out = sqlite3.connect(folder / "pm-scores.db", isolation_level=None)
    out.execute("PRAGMA journal_mode=WAL")
    out.execute("CREATE TABLE r (id INTEGER PRIMARY KEY, score REAL)")
    with Timer() as t:
        for seq, raw in bus.execute("SELECT seq, data FROM q").fetchall():
            e = decode(raw)
            score = float(
                model.predict(np.array([[getattr(e, c) for c in FEATURES]], np.float32))[0]
            )
            out.execute("INSERT INTO r VALUES (?, ?)", (seq, score))
            bus.execute("DELETE FROM q WHERE seq = ?", (seq,))
    return {"events": len(data), "seconds": t.seconds, "eps": len(data) / t.seconds}


async def _publish_all(settings: Settings, data: list[bytes]) -> None:
    async with open_broker(settings.broker) as broker:
        await broker.subscription(TOPIC, SUBSCRIPTION)
        for i in range(0, len(data), 5000):
            events = [
                Event.new("bench.tx", d, id=f"ev-{i + j:08d}")
                for j, d in enumerate(data[i : i + 5000])
            ]
            await broker.publish(TOPIC, events)


def _store_window(
    settings: Settings, column: str = "latency_ms"
) -> tuple[int, float, float, np.ndarray]:
    path = settings.store.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        rows = conn.execute(f"SELECT scored_at, {column} FROM results").fetchall()
    arr = np.array(rows) if rows else np.zeros((0, 2))
    return len(arr), float(arr[:, 0].min()), float(arr[:, 0].max()), arr[:, 1]


def pipeline(settings: Settings, data: list[bytes], workers: int) -> dict[str, float]:
    """End to end on the embedded broker, backlog published beforehand."""
    asyncio.run(_publish_all(settings, data))
    if workers == 1:
        started = time.time()
        asyncio.run(run_app(app, settings, until_idle_s=3.0))
    else:
        started = time.time()
        WorkerPool("scorebus.demo:app", settings, workers=workers, until_idle_s=3.0).start().wait()
    n, first, last, _ = _store_window(settings)
    # The rate runs from the first committed batch to the last: start-up (imports,
    # model load) is reported apart, and the first batch (all rows share its
    # scored_at) is not counted, since its work happened before the clock started.
    path = settings.store.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        (after_first,) = conn.execute(
            "SELECT COUNT(*) FROM results WHERE scored_at > ?", (first,)
        ).fetchone()
    return {
        "events": n,
        "seconds": last - first,
        "eps": after_first / (last - first),
        "startup_s": first - started,
    }


def pipeline_with_latency(settings: Settings, data: list[bytes], workers: int) -> dict[str, float]:
    """:func:`pipeline`, plus the p99 of the in-worker latency (pull to commit)."""
    result = pipeline(settings, data, workers)
    *_, service = _store_window(settings, "service_ms")
    return {**result, "p99_service_ms": pct(service, 99)}


def _paced_publisher(broker_url: str, data: list[bytes], rate: float, q: Any) -> None:
    async def go() -> None:
        async with open_broker(broker_url) as broker:
            start = time.time() + 0.5
            tick = 0.005
            sent = 0
            while sent < len(data):
                due = min(len(data), int((time.time() - start) / 1 * rate) + 1)
                if due > sent:
                    # Each event's time is when it was due, not when it went out.
                    events = [
                        Event(
                            id=f"ol-{k:08d}", type="bench.tx", time=start + k / rate, data=data[k]
                        )
                        for k in range(sent, due)
                    ]
                    await broker.publish(TOPIC, events)
                    sent = due
                await asyncio.sleep(tick)
        q.put(sent)

    asyncio.run(go())


def open_loop(settings: Settings, data: list[bytes], rate: float, workers: int) -> dict[str, float]:
    """Fixed arrival rate; latency from each event's scheduled time (no coordinated omission)."""
    asyncio.run(_publish_all(settings, []))
    pool = WorkerPool("scorebus.demo:app", settings, workers=workers, until_idle_s=2.0).start()
    time.sleep(3.0)  # let the workers load the model before the clock starts
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    pub = ctx.Process(target=_paced_publisher, args=(settings.broker, data, rate, q))
    pub.start()
    pub.join()
    pool.wait()
    n, first, last, lat = _store_window(settings)
    return {
        "rate": rate,
        "events": n,
        "achieved_eps": n / max(last - first, 1e-9),
        "p50_ms": pct(lat, 50),
        "p99_ms": pct(lat, 99),
        "p999_ms": pct(lat, 99.9),
    }
