"""Open-loop load against running worker processes, measured from the results store.

A phase publishes events on a fixed schedule (``(rate, seconds)`` segments), each
stamped with the time it was *due*, not the time it went out: the store's
``latency_ms`` (event time to commit) then counts any queueing behind a slow
consumer, so there is no coordinated omission. Event ids carry the phase's
prefix, so one worker pool can serve several phases in turn.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any

import numpy as np

from scorebus.app import Settings
from scorebus.app.run import WorkerPool
from scorebus.brokers import open_broker
from scorebus.demo import SCORER, TOPIC, app
from scorebus.events import Event

from .common import pct

DEMO_APP = "scorebus.demo:app"
SUBSCRIPTION = f"{app.name}.{SCORER}"
_CHUNK = 5000


def store_path(settings: Settings) -> str:
    return settings.store.removeprefix("sqlite:///")


def results(settings: Settings, prefix: str, columns: str = "scored_at, latency_ms") -> np.ndarray:
    """Rows of the results whose event id starts with ``prefix-``, as an array."""
    with closing(sqlite3.connect(store_path(settings))) as conn:
        try:
            rows = conn.execute(
                f"SELECT {columns} FROM results WHERE event_id >= ? AND event_id < ?",
                (f"{prefix}-", f"{prefix}."),
            ).fetchall()
        except sqlite3.OperationalError:  # no results table yet
            rows = []
    return np.array(rows, dtype=np.float64).reshape(len(rows), len(columns.split(",")))


def wait_for(settings: Settings, prefix: str, n: int, deadline: float) -> int:
    """Poll the store until ``n`` results of the phase are in or ``deadline`` (epoch) passes."""
    while True:
        done = len(results(settings, prefix, "scored_at"))
        if done >= n or time.time() > deadline:
            return done
        time.sleep(0.1)


def schedule(segments: list[tuple[float, float]]) -> np.ndarray:
    """Due times (seconds from the phase start) of events sent at each segment's rate."""
    parts, t0 = [], 0.0
    for rate, seconds in segments:
        parts.append(t0 + np.arange(int(rate * seconds)) / rate)
        t0 += seconds
    return np.concatenate(parts) if parts else np.zeros(0)


async def paced_publish(
    broker_url: str, data: list[bytes], due: np.ndarray, prefix: str
) -> tuple[float, float]:
    """Publish ``len(due)`` events on schedule.

    Returns:
        The phase's start (epoch seconds) and how far, at most, the publisher fell
        behind the schedule (seconds): a large lag means the offered rate was not met.
    """
    events = [
        Event(id=f"{prefix}-{k:08d}", type="bench.tx", data=data[k % len(data)])
        for k in range(len(due))
    ]
    async with open_broker(broker_url) as broker:
        start = time.time() + 0.2
        for ev, offset in zip(events, due.tolist(), strict=True):
            ev.time = start + offset
        sent, lag = 0, 0.0
        while sent < len(events):
            now = time.time() - start
            ready = int(np.searchsorted(due, now, side="right"))
            if ready > sent:
                ready = min(ready, sent + _CHUNK)
                await broker.publish(TOPIC, events[sent:ready])
                lag = max(lag, time.time() - start - float(due[ready - 1]))
                sent = ready
            else:
                await asyncio.sleep(min(0.002, max(0.0, float(due[sent]) - now)))
    return start, lag


def phase(
    settings: Settings,
    data: list[bytes],
    segments: list[tuple[float, float]],
    prefix: str,
    *,
    drain_s: float = 10.0,
) -> dict[str, Any]:
    """Run one open-loop phase against the workers already running on ``settings``.

    Returns the offered and achieved rates and the latency percentiles of the phase;
    ``saturated`` is true when the workers had not caught up ``drain_s`` after the
    last event was due (the percentiles then cover only what was committed), or
    when the achieved rate, drain included, fell below 0.9 of the offered one.
    """
    due = schedule(segments)
    start, lag = asyncio.run(paced_publish(settings.broker, data, due, prefix))
    published = time.time() - start
    span = float(due[-1]) if len(due) else 0.0
    done = wait_for(settings, prefix, len(due), start + span + drain_s)
    rows = results(settings, prefix)
    lat = rows[:, 1]
    last = float(rows[:, 0].max()) if len(rows) else start
    offered = len(due) / max(span, 1e-9)
    achieved = done / max(last - start, 1e-9)
    return {
        "prefix": prefix,
        "offered_eps": offered,
        "published_eps": len(due) / max(published, 1e-9),
        "max_lag_s": lag,
        "events": done,
        "achieved_eps": achieved,
        "saturated": done < len(due) or achieved < 0.9 * offered,
        "p50_ms": pct(lat, 50),
        "p99_ms": pct(lat, 99),
        "p999_ms": pct(lat, 99.9),
        "start": start,
    }


def warm_up(settings: Settings, timeout_s: float = 120.0) -> float:
    """Publish one event and wait for its result: the workers have loaded the model."""
    started = time.time()

    async def one() -> None:
        async with open_broker(settings.broker) as broker:
            await broker.subscription(TOPIC, SUBSCRIPTION)
            await broker.publish(TOPIC, [Event.new("bench.tx", _WARM, id="warm-0")])

    asyncio.run(one())
    if wait_for(settings, "warm", 1, started + timeout_s) < 1:
        raise RuntimeError(f"the workers scored nothing within {timeout_s:.0f} s")
    return time.time() - started


@contextmanager
def running(settings: Settings, app_ref: str = DEMO_APP, workers: int = 1) -> Iterator[WorkerPool]:
    """Worker processes of ``app_ref``, warmed up; stopped gracefully on exit."""

    async def subscribe() -> None:
        async with open_broker(settings.broker) as broker:
            await broker.subscription(TOPIC, SUBSCRIPTION)

    asyncio.run(subscribe())
    pool = WorkerPool(app_ref, settings, workers=workers, grace_s=30.0).start()
    try:
        warm_up(settings)
        yield pool
    finally:
        pool.stop()
        pool.wait()


_WARM = (
    b'{"card_id":"c-1","merchant":"m-1","amount":10.0,"hour":12,"merchant_category":1,'
    b'"distance_from_home_km":1.0,"velocity_1h":0.0,"card_age_days":100,"is_online":false,'
    b'"foreign":false}'
)
