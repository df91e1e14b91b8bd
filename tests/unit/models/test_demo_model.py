"""The demo fraud model: deterministic data and model, useful AUC, safe first registration."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from scorebus.models import (
    FEATURES,
    Registry,
    Transaction,
    ensure_demo_model,
    features_of,
    synthetic_features,
    synthetic_transactions,
    train_demo_model,
)
from scorebus.models.demo import evaluate


@pytest.fixture(scope="module")
def demo() -> Any:
    return train_demo_model()


def test_synthetic_features_are_deterministic_and_plausible() -> None:
    x, y = synthetic_features(20_000, seed=3)
    x2, y2 = synthetic_features(20_000, seed=3)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert x.shape == (20_000, len(FEATURES)) and x.dtype == np.float32
    assert 0.01 <= y.mean() <= 0.03
    assert 6 <= len(FEATURES) <= 10
    shifted, y_shifted = synthetic_features(20_000, seed=3, shift=1.0)
    amount = FEATURES.index("amount")
    assert shifted[:, amount].mean() > 1.3 * x[:, amount].mean()
    assert y_shifted.mean() > y.mean()


def test_transactions_match_schema_and_features() -> None:
    rows = synthetic_transactions(200, seed=5)
    events = msgspec.json.decode(msgspec.json.encode(rows), type=list[Transaction])
    assert len(events) == 200
    first = rows[0]
    assert set(first) == {*FEATURES, "card_id", "merchant"}
    assert isinstance(first["hour"], int) and isinstance(first["is_online"], bool)
    assert isinstance(first["amount"], float) and isinstance(first["card_id"], str)
    expected = synthetic_features(200, seed=5)[0]
    np.testing.assert_array_equal(features_of(rows), expected)
    np.testing.assert_array_equal(features_of(events), expected)


def test_demo_model_is_deterministic_and_accurate(demo: Any) -> None:
    x, _ = synthetic_features(2_000, seed=123)
    np.testing.assert_array_equal(train_demo_model().predict_proba(x), demo.predict_proba(x))
    assert not hasattr(demo, "feature_names_in_")
    assert evaluate(demo, seed=99)["auc"] > 0.85


def test_ensure_demo_model_is_idempotent(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    first = ensure_demo_model(registry)
    again = ensure_demo_model(registry)
    assert (first.name, first.version) == ("fraud", "1") and again == first
    assert registry.versions("fraud") == ["1"]
    assert registry.aliases("fraud") == {"champion": "1"}
    assert first.metrics["auc"] > 0.85 and first.features == FEATURES
    rows = synthetic_transactions(64, seed=8)
    scores = registry.load("fraud").predict(features_of(rows))
    assert scores.shape == (64,) and ((scores >= 0) & (scores <= 1)).all()


def test_ensure_demo_model_from_two_threads(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(ensure_demo_model(registry).version))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["1", "1"] and registry.versions("fraud") == ["1"]


def test_ensure_demo_model_from_two_processes(tmp_path: Path) -> None:
    script = (
        "import sys; from scorebus.models import Registry, ensure_demo_model; "
        "print(ensure_demo_model(Registry(sys.argv[1])).version)"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    assert [out.strip() for out, _ in outputs] == ["1", "1"]
    assert Registry(tmp_path).versions("fraud") == ["1"]
