"""The built-in jobs chained by a real App and Worker on the embedded SQLite broker.

data.arrived -> train_fraud -> model.trained -> promote_fraud -> model.promoted
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.workflow_fits import failing_fit, fit, write_dataset

from scorebus.app import App
from scorebus.brokers.sqlite import SqliteBroker
from scorebus.events import Event
from scorebus.models.registry import Registry
from scorebus.runtime.config import RetryPolicy
from scorebus.runtime.spec import HandlerContext
from scorebus.runtime.worker import Worker
from scorebus.workflows import (
    MODEL_PROMOTED,
    MODEL_REJECTED,
    MODEL_TRAINED,
    TRAINING_FAILED,
    Fit,
    install,
    promote_job,
    train_job,
)

OUTCOMES = (MODEL_TRAINED, TRAINING_FAILED, MODEL_PROMOTED, MODEL_REJECTED)
RETRY = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_dataset(tmp_path_factory.mktemp("data") / "labelled.csv", n=3000)


class Bus:
    """An app with the lifecycle jobs of ``fraud`` and a recorder of what they publish."""

    def __init__(self, tmp_path: Path, fit_fn: Fit | None = fit) -> None:
        uid = uuid.uuid4().hex[:8]
        self.tmp_path = tmp_path
        self.registry = Registry(tmp_path / "models")
        self.app = App(f"jobs-{uid}", events_topic=f"events-{uid}")
        self.seen: list[Event] = []
        self._lock = threading.Lock()
        if fit_fn is not None:  # else the test registers its own jobs on bus.app
            install(self.app, "fraud", fit_fn, registry=self.registry, margin=0.01, retry=RETRY)

        @self.app.on(*OUTCOMES)
        def record(event: Event, ctx: HandlerContext) -> None:
            with self._lock:
                self.seen.append(event)

    def of(self, type_: str) -> list[Event]:
        return [e for e in self.seen if e.type == type_]

    def run(self, *events: Event) -> Any:
        async def scenario() -> Any:
            async with SqliteBroker(f"sqlite:///{self.tmp_path}/bus.db") as broker:
                for topic, subscription in self.app.subscriptions():
                    await broker.subscription(topic, subscription)
                await broker.publish(self.app.events_topic, list(events))
                worker = Worker(
                    self.app.scorers,
                    self.app.handlers,
                    broker=broker,
                    store_url=f"sqlite:///{self.tmp_path}/scores.db",
                    model_threads=2,
                    shutdown_grace_s=10.0,
                )
                report = await worker.run(until_idle_s=0.5, handle_signals=False)
                return report, await broker.dead_letters()

        return asyncio.run(scenario())


def _arrived(dataset: str, **params: Any) -> Event:
    return Event.new("data.arrived", {"dataset": dataset, "params": params})


def test_data_arrived_trains_and_promotes_the_first_champion(tmp_path: Path, dataset: str) -> None:
    bus = Bus(tmp_path)
    arrived = _arrived(dataset)

    report, letters = bus.run(arrived)

    (trained,) = bus.of(MODEL_TRAINED)
    (promoted,) = bus.of(MODEL_PROMOTED)
    assert letters == []
    assert trained.causation_id == arrived.id
    assert promoted.causation_id == trained.id
    assert (trained.hops, promoted.hops) == (1, 2)
    assert promoted.data["version"] == trained.data["version"] == "1"
    assert promoted.data["previous"] is None
    assert bus.registry.resolve("fraud@champion").version == "1"
    assert bus.registry.get("fraud", 1).training_data == {
        "uri": dataset, "rows": 3000, "event": arrived.id,
    }  # fmt: skip
    assert report.dead_lettered == 0


def test_a_better_version_replaces_the_champion_and_a_worse_one_is_rejected(
    tmp_path: Path, dataset: str
) -> None:
    bus = Bus(tmp_path)
    bus.run(_arrived(dataset, use=["amount", "hour"]))
    assert bus.registry.resolve("fraud@champion").version == "1"

    bus.run(_arrived(dataset))  # all features: better by far more than the margin
    bus.run(_arrived(dataset, use=["amount"]))

    promoted, rejected = bus.of(MODEL_PROMOTED), bus.of(MODEL_REJECTED)
    assert [e.data["version"] for e in promoted] == ["1", "2"]
    assert promoted[1].data["previous"] == "1"
    assert promoted[1].data["candidate_value"] > promoted[1].data["champion_value"] + 0.01
    (worse,) = rejected
    assert worse.data["version"] == "3"
    assert worse.data["candidate_value"] < worse.data["champion_value"]
    assert bus.registry.resolve("fraud@champion").version == "2"
    assert bus.registry.versions("fraud") == ["1", "2", "3"]


def test_a_failing_fit_publishes_training_failed_and_keeps_the_champion(
    tmp_path: Path, dataset: str
) -> None:
    bus = Bus(tmp_path)
    bus.run(_arrived(dataset))
    failing = Bus(tmp_path, failing_fit)  # the same registry, a broken training function

    report, letters = failing.run(_arrived("/data/broken.csv"))

    (failed,) = failing.of(TRAINING_FAILED)
    assert failed.data["stage"] == "fit"
    assert "label column is empty" in failed.data["error"]
    assert failing.of(MODEL_TRAINED) == failing.of(MODEL_PROMOTED) == []
    assert (letters, report.retried) == ([], 0)
    assert bus.registry.versions("fraud") == ["1"]
    assert bus.registry.resolve("fraud@champion").version == "1"


def test_a_redelivered_data_arrived_registers_one_version(tmp_path: Path, dataset: str) -> None:
    # The worker crashes after training (before the ack), so the broker delivers
    # data.arrived again; the second delivery must find the first one's version.
    bus = Bus(tmp_path, None)
    deliveries: list[int] = []

    def crash_after_training(job: Callable[..., None]) -> Callable[..., None]:
        def train_fraud(event: Event, ctx: HandlerContext) -> None:
            job(event, ctx)
            deliveries.append(1)
            if len(deliveries) == 1:
                raise RuntimeError("worker lost before the ack")

        return train_fraud

    bus.app.on("data.arrived", retry=RETRY)(
        crash_after_training(train_job("fraud", fit, registry=bus.registry))
    )
    bus.app.on(MODEL_TRAINED)(promote_job("fraud", registry=bus.registry))

    report, letters = bus.run(_arrived(dataset))

    assert len(deliveries) == 2
    assert report.retried == 1
    assert letters == []
    assert bus.registry.versions("fraud") == ["1"]
    assert [e.data["version"] for e in bus.of(MODEL_TRAINED)] == ["1"]
    assert [e.data["version"] for e in bus.of(MODEL_PROMOTED)] == ["1"]
    assert bus.registry.resolve("fraud@champion").version == "1"


def test_promoting_a_version_that_does_not_exist_is_dead_lettered(
    tmp_path: Path, dataset: str
) -> None:
    bus = Bus(tmp_path)
    bus.run(_arrived(dataset))
    ghost = Event.new(MODEL_TRAINED, {"model": "fraud", "version": "42"})
    bus.seen.clear()

    report, letters = bus.run(ghost)

    assert report.dead_lettered == 1
    (letter,) = letters
    assert (letter.event_id, letter.reason, letter.attempts) == (ghost.id, "unknown_version", 1)
    assert "no version '42'" in letter.error
    assert bus.of(MODEL_PROMOTED) == bus.of(MODEL_REJECTED) == []
    assert bus.registry.resolve("fraud@champion").version == "1"
