"""Shared fixtures: small real estimators fitted on the demo's synthetic data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from scorebus.models.demo import synthetic_features


@pytest.fixture(scope="session")
def data() -> tuple[np.ndarray, np.ndarray]:
    return synthetic_features(3000, seed=11)


@pytest.fixture(scope="session")
def hgb(data: tuple[np.ndarray, np.ndarray]) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = data
    return HistGradientBoostingClassifier(max_iter=15, max_depth=3, random_state=0).fit(x, y)


@pytest.fixture(scope="session")
def forest(data: tuple[np.ndarray, np.ndarray]) -> Any:
    # skl2onnx converts random forests; it cannot convert HistGradientBoosting
    # with the onnx release pinned here (bool attribute rejected by onnx.helper).
    from sklearn.ensemble import RandomForestClassifier

    x, y = data
    return RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0).fit(x, y)
