"""``drift_job`` in a worker on the embedded SQLite broker, beside the scorer it watches.

The scorer and the drift job each have their own subscription to the
transactions topic (fan-out); ``drift.detected`` goes to the events topic, where
a further handler of the same app consumes it, as a re-training step would.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from tests.drift_support import register_fraud

from scorebus.app import App
from scorebus.app.run import run_app
from scorebus.app.settings import Settings
from scorebus.brokers.sqlite import SqliteBroker
from scorebus.events import Event
from scorebus.models.demo import Transaction, synthetic_transactions
from scorebus.models.registry import Registry
from scorebus.runtime.spec import HandlerContext
from scorebus.workflows import DRIFT_DETECTED
from scorebus.workflows.drift import drift_job


def _app(registry: Registry, alerts: list[Event]) -> App:
    uid = uuid.uuid4().hex[:8]
    app = App(f"drift-{uid}", events_topic=f"events-{uid}")
    lock = threading.Lock()

    @app.scorer(subscribe=f"tx-{uid}", schema=Transaction, model="fraud@champion")
    def score(events: list[Transaction], scores: np.ndarray) -> list[dict[str, Any]]:
        return [{"fraud": float(s)} for s in scores]

    app.on("transaction", topic=f"tx-{uid}")(
        drift_job(
            "fraud@champion", registry=registry, window=500, every=250, topic=app.events_topic
        )
    )

    @app.on(DRIFT_DETECTED)
    def on_drift(event: Event, ctx: HandlerContext) -> None:
        with lock:
            alerts.append(event)

    return app


async def _publish(url: str, topic: str, rows: list[dict[str, Any]]) -> None:
    async with SqliteBroker(url) as broker:
        await broker.publish(topic, [Event.new("transaction", row) for row in rows])


def test_drift_detected_is_published_after_shifted_events_and_not_before(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "models")
    register_fraud(registry)
    alerts: list[Event] = []
    app = _app(registry, alerts)
    settings = Settings(
        broker=f"sqlite:///{tmp_path}/bus.db",
        store=f"sqlite:///{tmp_path}/scores.db",
        registry=tmp_path / "models",
    )
    (topic,) = {s.topic for s in app.scorers}

    async def scenario() -> None:
        async with SqliteBroker(settings.broker) as broker:
            for t, subscription in app.subscriptions():
                await broker.subscription(t, subscription)

        await _publish(settings.broker, topic, synthetic_transactions(1000, seed=51))
        first = await run_app(app, settings, until_idle_s=0.5, model_threads=1)
        assert first.scored == 1000
        assert alerts == []

        await _publish(settings.broker, topic, synthetic_transactions(1000, seed=52, shift=1.0))
        second = await run_app(app, settings, until_idle_s=0.5, model_threads=1)
        assert second.scored == 1000
        # 1,000 drift-job events and the one alert, handled by on_drift.
        assert second.handled == 1001
        async with SqliteBroker(settings.broker) as broker:
            assert not await broker.dead_letters()

    asyncio.run(scenario())

    (alert,) = alerts
    assert alert.type == DRIFT_DETECTED
    assert (alert.data["model"], alert.data["version"]) == ("fraud", "1")
    assert alert.data["window"] == 500
    assert {"amount", "distance_from_home_km", "velocity_1h"} <= set(alert.data["drifted"])
    assert alert.hops == 1 and alert.causation_id is not None
