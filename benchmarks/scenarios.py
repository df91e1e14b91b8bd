"""The scenarios `make bench` runs, side by side on the same events and model.

- limit: decode + the bare model's batched predict (no broker, no store);
- per-message: decode one event, predict one row, commit one result, ack one
  message (the original one-event-at-a-time design);
- pipeline: scorebus end to end on the embedded broker (publish done before;
  consume, validate, score, store, ack), in one and in several processes;
- open loop: events published at fixed rates (fractions of the measured
  capacity), latency from each event's scheduled time, so queueing is not hidden
  (``benchmarks/load.py``).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from scorebus.app import Settings
from scorebus.app.run import WorkerPool, run_app
from scorebus.brokers import open_broker
from scorebus.demo import TOPIC
from scorebus.demo import app as demo_app
from scorebus.events import Event
from scorebus.models.demo import FEATURES, Transaction, synthetic_transactions
from scorebus.models.registry import Registry

from .common import Timer, pct
from .load import DEMO_APP, SUBSCRIPTION, phase, running


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


async def publish_all(settings: Settings, data: list[bytes]) -> None:
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
    asyncio.run(publish_all(settings, data))
    started = time.time()
    if workers == 1:
        asyncio.run(run_app(demo_app, settings, until_idle_s=3.0))
    else:
        WorkerPool(DEMO_APP, settings, workers=workers, until_idle_s=3.0).start().wait()
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


def open_loop(
    settings: Settings,
    data: list[bytes],
    rates: list[float],
    workers: int,
    *,
    seconds: float,
    app_ref: str = DEMO_APP,
) -> list[dict[str, Any]]:
    """Fixed arrival rates, one phase each on the same warm workers, lowest first.

    Latency runs from each event's scheduled time (no coordinated omission).
    """
    out = []
    with running(settings, app_ref, workers):
        for i, rate in enumerate(sorted(rates)):
            out.append(phase(settings, data, [(rate, seconds)], f"ol{i}"))
    return out
