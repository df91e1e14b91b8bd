"""Evaluate and promote: the decision rule, the registry effect, the published figures."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from sklearn.linear_model import LogisticRegression
from tests.workflow_fits import evaluate_auc, write_dataset

from scorebus.errors import ConfigError, PermanentError, SchemaError
from scorebus.events import Event
from scorebus.models.base import Model
from scorebus.models.demo import FEATURES, synthetic_features
from scorebus.models.registry import Registry
from scorebus.runtime.spec import HandlerContext
from scorebus.workflows import (
    MODEL_PROMOTED,
    MODEL_REJECTED,
    UnknownVersionError,
    decide,
    evaluate_and_promote,
    promote_job,
)


@pytest.mark.parametrize(
    ("candidate", "champion", "margin", "higher", "has_champion", "promote", "says"),
    [
        (0.7, None, 0.0, True, False, True, "no champion"),
        (0.91, 0.90, 0.0, True, True, True, "higher by 0.01"),
        (0.90, 0.90, 0.0, True, True, False, "not higher"),
        (0.905, 0.90, 0.01, True, True, False, "less than the margin 0.01"),
        (0.92, 0.90, 0.01, True, True, True, "margin 0.01"),
        (0.85, 0.90, 0.0, True, True, False, "not higher"),
        (0.20, 0.25, 0.02, False, True, True, "lower by 0.05"),
        (0.30, 0.25, 0.0, False, True, False, "not lower"),
        (None, 0.90, 0.0, True, True, False, "candidate has no 'auc'"),
        (math.nan, 0.90, 0.0, True, True, False, "candidate has no 'auc'"),
        (0.95, None, 0.0, True, True, False, "champion has no 'auc'"),
    ],
)
def test_the_promotion_rule(
    candidate: float | None,
    champion: float | None,
    margin: float,
    higher: bool,
    has_champion: bool,
    promote: bool,
    says: str,
) -> None:
    decided, reason = decide(
        candidate, champion, metric="auc", margin=margin,
        higher_is_better=higher, has_champion=has_champion,
    )  # fmt: skip

    assert decided is promote
    assert says in reason


@pytest.mark.parametrize("margin", [-0.01, math.inf, math.nan])
def test_a_margin_must_be_a_finite_non_negative_number(margin: float, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="margin="):
        promote_job("fraud", registry=tmp_path, margin=margin)


@pytest.fixture(scope="module")
def estimators() -> dict[str, Any]:
    x, y = synthetic_features(2000, 3)
    return {
        "all": LogisticRegression(max_iter=1000).fit(x, y),
        "amount": LogisticRegression(max_iter=1000).fit(x[:, :1], y),
    }


def _registry(tmp_path: Path, estimators: dict[str, Any], *aucs: float | None) -> Registry:
    registry = Registry(tmp_path / "models")
    for auc in aucs:
        registry.register(
            "fraud",
            estimators["all"],
            features=FEATURES,
            metrics={} if auc is None else {"auc": auc, "rows": 2000},
        )
    return registry


def _call(handler: Any, event: Event) -> list[Event]:
    ctx = HandlerContext(event=event, default_topic="events")
    handler(event, ctx)
    return [e for _, e in ctx.outgoing]


def test_a_better_candidate_is_promoted_and_a_worse_one_rejected(
    tmp_path: Path, estimators: dict[str, Any]
) -> None:
    registry = _registry(tmp_path, estimators, 0.80, 0.85, 0.84)
    handler = promote_job("fraud", registry=registry, margin=0.01)

    (first,) = _call(handler, Event.new("model.trained", {"model": "fraud", "version": "1"}))
    (better,) = _call(handler, Event.new("model.trained", {"model": "fraud", "version": 2}))
    (worse,) = _call(handler, Event.new("model.trained", {"model": "fraud", "version": "3"}))

    assert (first.type, first.data["previous"], first.data["reason"]) == (
        MODEL_PROMOTED, None, "no champion yet",
    )  # fmt: skip
    assert better.type == MODEL_PROMOTED
    assert better.data == {
        "model": "fraud",
        "version": "2",
        "alias": "champion",
        "previous": "1",
        "promoted": True,
        "metric": "auc",
        "candidate_value": 0.85,
        "champion_value": 0.80,
        "margin": 0.01,
        "reason": better.data["reason"],
    }
    assert worse.type == MODEL_REJECTED
    assert (worse.data["previous"], worse.data["promoted"]) == ("2", False)
    assert (worse.data["candidate_value"], worse.data["champion_value"]) == (0.84, 0.85)
    assert "not higher" in worse.data["reason"]
    assert registry.resolve("fraud@champion").version == "2"
    assert handler.__name__ == "promote_fraud"
    assert set(handler.emits) == {MODEL_PROMOTED, MODEL_REJECTED}  # type: ignore[attr-defined]


def test_a_redelivered_promotion_is_promoted_again_without_a_change(
    tmp_path: Path, estimators: dict[str, Any]
) -> None:
    registry = _registry(tmp_path, estimators, 0.80, 0.90)
    registry.promote("fraud", 1)
    handler = promote_job("fraud", registry=registry)
    event = Event.new("model.trained", {"model": "fraud", "version": "2"})

    (first,) = _call(handler, event)
    (again,) = _call(handler, event)

    assert first.id == again.id
    assert (first.type, again.type) == (MODEL_PROMOTED, MODEL_PROMOTED)
    assert (again.data["reason"], again.data["previous"]) == ("already the champion", "1")
    assert registry.rollback("fraud").version == "1"  # one alias move, not two


def test_an_unknown_version_is_a_permanent_error_naming_what_exists(
    tmp_path: Path, estimators: dict[str, Any]
) -> None:
    registry = _registry(tmp_path, estimators, 0.8)
    handler = promote_job("fraud", registry=registry)

    with pytest.raises(UnknownVersionError) as info:
        _call(handler, Event.new("model.trained", {"model": "fraud", "version": "7"}))

    assert isinstance(info.value, PermanentError)
    assert info.value.reason == "unknown_version"
    assert "has no version '7'; versions: 1" in str(info.value)
    assert registry.aliases("fraud") == {}


def test_events_about_other_models_are_ignored_and_bad_ones_rejected(
    tmp_path: Path, estimators: dict[str, Any]
) -> None:
    registry = _registry(tmp_path, estimators, 0.8)
    handler = promote_job("fraud", registry=registry)

    assert _call(handler, Event.new("model.trained", {"model": "churn", "version": "1"})) == []
    with pytest.raises(SchemaError, match="version"):
        _call(handler, Event.new("model.trained", {"model": "fraud"}))
    assert registry.aliases("fraud") == {}


def test_a_champion_without_the_metric_is_not_replaced_blindly(
    tmp_path: Path, estimators: dict[str, Any]
) -> None:
    registry = _registry(tmp_path, estimators, None, 0.99)
    registry.promote("fraud", 1)

    decision = evaluate_and_promote("fraud", 2, registry=registry, metric="auc")

    assert not decision.promoted
    assert "champion has no 'auc'" in decision.reason
    assert registry.resolve("fraud@champion").version == "1"


def test_evaluate_measures_both_versions_on_the_holdout(
    tmp_path: Path, estimators: dict[str, Any]
) -> None:
    registry = Registry(tmp_path / "models")
    # Stored metrics claim the opposite of the truth: evaluate= must not read them.
    registry.register("fraud", estimators["all"], features=FEATURES, metrics={"auc": 0.5})
    registry.register("fraud", estimators["amount"], features=("amount",), metrics={"auc": 0.99})
    registry.promote("fraud", 1)
    holdout = write_dataset(tmp_path / "holdout.csv", n=3000, seed=11)

    decision = evaluate_and_promote(
        "fraud", 2, registry=registry, evaluate=evaluate_auc, holdout=holdout
    )

    assert not decision.promoted
    assert decision.candidate_value is not None and decision.champion_value is not None
    assert decision.champion_value > decision.candidate_value > 0.5
    assert registry.resolve("fraud@champion").version == "1"


def test_a_failing_evaluation_rejects_and_a_missing_holdout_is_dead_lettered(
    tmp_path: Path, estimators: dict[str, Any]
) -> None:
    registry = _registry(tmp_path, estimators, 0.8, 0.9)
    registry.promote("fraud", 1)

    def broken(model: Model, holdout: str) -> dict[str, float]:
        raise OSError(f"{holdout}: no such table")

    decision = evaluate_and_promote(
        "fraud", 2, registry=registry, evaluate=broken, holdout="warehouse://holdout"
    )
    handler = promote_job("fraud", registry=registry, evaluate=broken)

    assert not decision.promoted
    assert decision.reason == (
        "evaluating fraud@2 failed: OSError: warehouse://holdout: no such table"
    )
    with pytest.raises(PermanentError, match="no holdout"):
        _call(handler, Event.new("model.trained", {"model": "fraud", "version": "2"}))
    assert registry.resolve("fraud@champion").version == "1"
