"""The train and re-train jobs: registration, idempotency on redelivery, failure paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.workflow_fits import failing_fit, fit, flaky_store_fit, write_dataset

from scorebus.app import App
from scorebus.errors import SchemaError, TransientError
from scorebus.events import Event
from scorebus.models.registry import Registry
from scorebus.runtime.spec import HandlerContext
from scorebus.workflows import (
    MODEL_PROMOTED,
    MODEL_REJECTED,
    MODEL_TRAINED,
    TRAINING_FAILED,
    Trained,
    TrainingData,
    TrainingFailed,
    install,
    retrain_job,
    train,
    train_job,
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_dataset(tmp_path_factory.mktemp("data") / "train.csv", n=3000)


def _call(handler: Any, event: Event) -> list[Event]:
    ctx = HandlerContext(event=event, default_topic="events")
    handler(event, ctx)
    assert all(topic == "events" for topic, _ in ctx.outgoing)
    return [e for _, e in ctx.outgoing]


def test_train_registers_the_version_with_its_metrics_and_data(
    tmp_path: Path, dataset: str
) -> None:
    registry = Registry(tmp_path / "models")
    cause = Event.new("data.arrived", {"dataset": dataset})

    result = train("fraud", fit, dataset, registry=registry, params={"x": 1}, event=cause)

    mv = registry.get("fraud", result.version)
    assert result.version == "1" and not result.reused
    assert mv.metrics == result.metrics
    assert 0.75 < mv.metrics["auc"] <= 1.0
    assert mv.training_data == {"uri": dataset, "rows": 3000, "event": cause.id}
    assert mv.features == ("amount", "hour", "merchant_category", "distance_from_home_km",
                           "velocity_1h", "card_age_days", "is_online", "foreign")  # fmt: skip
    assert registry.aliases("fraud") == {}


def test_the_job_publishes_model_trained_once_per_cause(tmp_path: Path, dataset: str) -> None:
    registry = Registry(tmp_path / "models")
    handler = train_job("fraud", fit, registry=registry, alias="candidate")
    event = Event.new("data.arrived", {"dataset": dataset, "params": {"use": ["amount"]}})

    (first,) = _call(handler, event)
    (again,) = _call(handler, event)  # redelivered: no second version

    assert registry.versions("fraud") == ["1"]
    assert registry.aliases("fraud") == {"candidate": "1"}
    assert first.type == MODEL_TRAINED
    assert first.causation_id == event.id
    assert first.data == {
        "model": "fraud",
        "version": "1",
        "metrics": registry.get("fraud", 1).metrics,
        "dataset": dataset,
    }
    assert registry.get("fraud", 1).features == ("amount",)
    assert (again.id, again.data) == (first.id, first.data)
    assert handler.__name__ == "train_fraud"
    assert set(handler.emits) == {MODEL_TRAINED, TRAINING_FAILED}  # type: ignore[attr-defined]

    (other,) = _call(handler, Event.new("data.arrived", {"dataset": dataset}))
    assert other.data["version"] == "2"


def test_a_failing_fit_publishes_training_failed_and_keeps_the_champion(
    tmp_path: Path, dataset: str
) -> None:
    registry = Registry(tmp_path / "models")
    champion = train("fraud", fit, dataset, registry=registry)
    registry.promote("fraud", champion.version)
    event = Event.new("data.arrived", {"dataset": "/data/empty.csv"})

    (failed,) = _call(train_job("fraud", failing_fit, registry=registry), event)

    assert failed.type == TRAINING_FAILED
    assert failed.data == {
        "model": "fraud",
        "dataset": "/data/empty.csv",
        "stage": "fit",
        "reason": "ValueError",
        "error": "/data/empty.csv: the label column is empty",
    }
    assert registry.versions("fraud") == ["1"]
    assert registry.resolve("fraud@champion").version == "1"


def test_a_transient_failure_is_raised_for_the_bus_to_retry(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "models")
    handler = train_job("fraud", flaky_store_fit, registry=registry)
    event = Event.new("data.arrived", {"dataset": "warehouse://txns"})
    ctx = HandlerContext(event=event, default_topic="events")

    with pytest.raises(TransientError, match="feature store"):
        handler(event, ctx)

    assert ctx.outgoing == []
    assert registry.versions("fraud") == []


@pytest.mark.parametrize(
    ("returned", "stage", "reason", "error"),
    [
        (object(), "fit", "TypeError", "fit must return Trained(...), got object"),
        (Trained(model=object()), "register", "ConfigError", "object"),
    ],
    ids=["not-trained", "not-a-model"],
)
def test_what_fit_returns_must_be_registrable(
    tmp_path: Path, returned: Any, stage: str, reason: str, error: str
) -> None:
    registry = Registry(tmp_path / "models")

    with pytest.raises(TrainingFailed) as info:
        train("fraud", lambda data: returned, "d.csv", registry=registry)

    assert (info.value.stage, info.value.reason) == (stage, reason)
    assert error in info.value.error
    assert registry.versions("fraud") == []


def test_bad_or_foreign_data_arrived_events(tmp_path: Path, dataset: str) -> None:
    registry = Registry(tmp_path / "models")
    handler = train_job("fraud", fit, registry=registry)

    with pytest.raises(SchemaError, match="dataset"):
        _call(handler, Event.new("data.arrived", {"params": {}}))
    assert _call(handler, Event.new("data.arrived", {"dataset": dataset, "model": "churn"})) == []
    assert registry.versions("fraud") == []


def test_retrain_trains_on_the_recent_data_of_its_model_only(tmp_path: Path, dataset: str) -> None:
    registry = Registry(tmp_path / "models")
    asked: list[str] = []

    def recent(event: Event) -> str:
        asked.append(event.id)
        return dataset

    handler = retrain_job("fraud", fit, registry=registry, recent_data=recent)
    drift = Event.new("drift.detected", {"model": "fraud", "score": 0.4})

    (trained,) = _call(handler, drift)
    assert _call(handler, Event.new("drift.detected", {"model": "churn"})) == []

    assert trained.type == MODEL_TRAINED
    assert trained.data["dataset"] == dataset
    assert asked == [drift.id]
    assert registry.get("fraud", 1).training_data["event"] == drift.id  # type: ignore[index]
    assert handler.__name__ == "retrain_fraud"


def test_retrain_without_a_dataset_says_so(tmp_path: Path) -> None:
    handler = retrain_job("fraud", fit, registry=tmp_path / "models")

    (failed,) = _call(handler, Event.new("drift.detected", {"model": "fraud"}))

    assert failed.type == TRAINING_FAILED
    assert (failed.data["stage"], failed.data["dataset"]) == ("data", None)
    assert "recent_data=" in failed.data["error"]


def test_install_wires_train_retrain_and_promote(tmp_path: Path) -> None:
    app = App("lifecycle")

    names = install(app, "fraud", fit, registry=tmp_path / "models", margin=0.01)

    assert names == ["train_fraud", "promote_fraud", "retrain_fraud"]
    by_name = {h.name: h for h in app.handlers}
    assert by_name["train_fraud"].types == {"data.arrived"}
    assert by_name["promote_fraud"].types == {MODEL_TRAINED}
    assert by_name["retrain_fraud"].types == {"drift.detected"}
    assert by_name["promote_fraud"].emits == {MODEL_PROMOTED, MODEL_REJECTED}
    assert by_name["retrain_fraud"].emits == {MODEL_TRAINED, TRAINING_FAILED}


def test_training_data_reaches_fit(tmp_path: Path) -> None:
    seen: list[TrainingData] = []

    def spy(data: TrainingData) -> Trained:
        seen.append(data)
        raise RuntimeError("stop here")

    event = Event.new("data.arrived", {"dataset": "s3://b/k", "params": {"C": 0.5}})
    (failed,) = _call(train_job("fraud", spy, registry=tmp_path), event)

    assert failed.data["reason"] == "RuntimeError"
    (data,) = seen
    assert (data.model, data.uri, dict(data.params), data.event) == (
        "fraud", "s3://b/k", {"C": 0.5}, event,
    )  # fmt: skip
