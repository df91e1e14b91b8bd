"""``Trained(X=...)``: training stores the drift reference that ``drift_job`` reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from tests.workflow_fits import read_dataset, write_dataset

from scorebus.models.demo import FEATURES, synthetic_features
from scorebus.models.registry import Registry
from scorebus.workflows import Trained, TrainingData, TrainingFailed, train
from scorebus.workflows.drift import REFERENCE_KEY, DriftMonitor, reference_of


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_dataset(tmp_path_factory.mktemp("data") / "train.csv", n=2000)


def fit_with_inputs(data: TrainingData) -> Trained:
    x, y = read_dataset(data.uri)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    return Trained(model=model, features=FEATURES, rows=len(y), X=x)


def test_the_training_inputs_become_the_versions_drift_reference(
    tmp_path: Path, dataset: str
) -> None:
    registry = Registry(tmp_path / "models")

    result = train("fraud", fit_with_inputs, dataset, registry=registry)

    mv = registry.get("fraud", result.version)
    reference = reference_of(mv)
    assert mv.training_data[REFERENCE_KEY] is not None  # type: ignore[index]
    assert (reference["rows"], list(reference["features"])) == (2000, list(FEATURES))
    # The stored reference is the training distribution: fresh rows from it pass,
    # rows whose amounts tripled are flagged on that feature alone.
    monitor = DriftMonitor(reference, window=None)
    x, _ = synthetic_features(1000, seed=5)
    monitor.add(x)
    assert monitor.check().drifted == []
    monitor.reset()
    x[:, FEATURES.index("amount")] *= 3
    monitor.add(x)
    assert monitor.check().drifted == ["amount"]


def test_without_inputs_no_reference_is_stored(tmp_path: Path, dataset: str) -> None:
    registry = Registry(tmp_path / "models")

    def fit(data: TrainingData) -> Trained:
        trained = fit_with_inputs(data)
        return Trained(model=trained.model, features=FEATURES, rows=trained.rows)

    result = train("fraud", fit, dataset, registry=registry)

    assert REFERENCE_KEY not in registry.get("fraud", result.version).training_data  # type: ignore[operator]


def test_the_feature_names_may_come_from_the_estimator(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "models")
    x, y = synthetic_features(500, seed=3)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    model.feature_names_in_ = np.array(FEATURES, dtype=object)  # as fitted on a DataFrame

    result = train("fraud", lambda data: Trained(model=model, X=x), "d.csv", registry=registry)

    assert list(reference_of(registry.get("fraud", result.version))["features"]) == list(FEATURES)


@pytest.mark.parametrize(
    ("features", "inputs", "error"),
    [
        (None, np.zeros((10, 8)), "needs features=[...]"),
        (FEATURES, np.zeros((10, 3)), "expected rows of 8 columns"),
    ],
    ids=["unnamed-columns", "wrong-width"],
)
def test_inputs_that_cannot_give_a_reference_fail_the_training(
    tmp_path: Path, features: tuple[str, ...] | None, inputs: np.ndarray, error: str
) -> None:
    registry = Registry(tmp_path / "models")
    x, y = synthetic_features(300, seed=2)
    model = LogisticRegression(max_iter=1000).fit(x, y)  # numpy: no feature names

    with pytest.raises(TrainingFailed) as info:
        train(
            "fraud",
            lambda data: Trained(model=model, features=features, X=inputs),
            "d.csv",
            registry=registry,
        )

    assert (info.value.stage, info.value.reason) == ("fit", "ConfigError")
    assert error in info.value.error
    assert registry.versions("fraud") == []
