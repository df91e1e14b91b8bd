"""A registry with fraud models that carry a drift reference, for the drift tests.

Each version is a small logistic regression fitted on the demo fraud generator
(``scorebus.models.demo``) at some distribution ``shift``, registered with the
reference statistics of its training rows.
"""

from __future__ import annotations

from scorebus.models.demo import FEATURES, synthetic_features
from scorebus.models.registry import Registry
from scorebus.models.version import ModelVersion
from scorebus.workflows.drift import REFERENCE_KEY, reference_stats


def register_fraud(
    registry: Registry,
    *,
    shift: float = 0.0,
    seed: int = 7,
    rows: int = 20_000,
    alias: str | None = "champion",
    reference: bool = True,
) -> ModelVersion:
    """Register a fraud version trained at ``shift`` (with its reference unless told not to)."""
    from sklearn.linear_model import LogisticRegression

    x, y = synthetic_features(rows, seed, shift=shift)
    training: dict[str, object] = {"rows": rows, "shift": shift}
    if reference:
        training[REFERENCE_KEY] = reference_stats(x, FEATURES)
    return registry.register(
        "fraud",
        LogisticRegression(max_iter=500).fit(x, y),
        features=FEATURES,
        training_data=training,
        alias=alias,
    )
