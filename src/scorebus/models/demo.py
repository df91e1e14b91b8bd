"""The demo fraud model: synthetic card transactions and a small gradient-boosted model.

Everything is built from a fixed seed with no downloads, so every laptop gets
the same model and the same scores. The generating process is a logistic
model of plausible fraud signals (night hours, risky merchant categories,
distance from home, bursts of transactions, new cards, online and foreign
payments) with one interaction (new card *and* a burst) that a linear model
misses. About 2% of transactions are fraud.

Example::

    registry = open_registry()
    ensure_demo_model(registry)          # trains and registers fraud v1 once
    model = registry.load("fraud")
    rows = synthetic_transactions(512, seed=1)
    scores = model.predict(features_of(rows))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any

import msgspec
import numpy as np

from .registry_base import ModelRegistry
from .version import ModelVersion

DEMO_MODEL = "fraud"
FEATURES: tuple[str, ...] = (
    "amount",
    "hour",
    "merchant_category",
    "distance_from_home_km",
    "velocity_1h",
    "card_age_days",
    "is_online",
    "foreign",
)
TRAIN_ROWS = 40_000
HOLDOUT_ROWS = 20_000
# Categories 7-9 (electronics, gift cards, travel) are where stolen cards are spent.
_CATEGORY_P = np.array([0.2, 0.16, 0.14, 0.12, 0.1, 0.08, 0.07, 0.05, 0.05, 0.03])
_CATEGORY_RISK = np.array([0.0, -0.3, 0.0, 0.2, -0.2, 0.3, 0.4, 1.0, 1.4, 0.9])


class Transaction(msgspec.Struct, frozen=True, kw_only=True):
    """One card transaction event, as ``synthetic_transactions`` produces it."""

    card_id: str
    merchant: str
    amount: Annotated[float, msgspec.Meta(ge=0)]
    hour: Annotated[int, msgspec.Meta(ge=0, le=23)]
    merchant_category: Annotated[int, msgspec.Meta(ge=0, le=9)]
    distance_from_home_km: Annotated[float, msgspec.Meta(ge=0)]
    velocity_1h: Annotated[float, msgspec.Meta(ge=0)]
    card_age_days: Annotated[int, msgspec.Meta(ge=0)]
    is_online: bool
    foreign: bool


def _draw(n: int, seed: int, shift: float) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    foreign = rng.random(n) < 0.04 + 0.02 * shift
    cols: dict[str, np.ndarray] = {
        "amount": np.round(rng.lognormal(3.4 + 0.5 * shift, 1.1, n), 2),
        "hour": np.floor(rng.normal(14.0, 4.5, n)).astype(np.int64) % 24,
        "merchant_category": rng.choice(10, size=n, p=_CATEGORY_P),
        "distance_from_home_km": np.round(
            rng.exponential(8.0 * (1 + shift), n) + foreign * rng.exponential(900.0, n), 1
        ),
        "velocity_1h": rng.poisson(0.6 * (1 + shift), n).astype(np.float64),
        "card_age_days": (rng.exponential(900.0, n) + 1).astype(np.int64),
        "is_online": rng.random(n) < 0.35 + 0.1 * shift,
        "foreign": foreign,
    }
    new_card = cols["card_age_days"] < 45
    logit = (
        -12.5
        + 0.9 * np.log1p(cols["amount"])
        + 2.6 * (cols["hour"] < 6)
        + 2.0 * _CATEGORY_RISK[cols["merchant_category"]]
        + 0.6 * np.log1p(cols["distance_from_home_km"])
        + 1.0 * cols["velocity_1h"]
        + 2.0 * new_card
        + 3.2 * (new_card & (cols["velocity_1h"] >= 2))
        + 1.4 * cols["is_online"]
        + 2.4 * foreign
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return cols, y


def synthetic_features(n: int, seed: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A feature matrix and fraud labels from the synthetic generating process.

    Args:
        n: Number of transactions.
        seed: Random seed; the same seed gives the same rows.
        shift: Distribution shift for drift demos: 0 is the training
            distribution; positive values mean larger amounts, more distance,
            more bursts, more online and foreign payments (and so more fraud).

    Returns:
        ``(X, y)``: float32 ``(n, len(FEATURES))`` in ``FEATURES`` order and
        int64 ``(n,)`` labels (1 = fraud).
    """
    cols, y = _draw(n, seed, shift)
    return np.column_stack([cols[f] for f in FEATURES]).astype(np.float32), y


def synthetic_transactions(n: int, seed: int, shift: float = 0.0) -> list[dict[str, Any]]:
    """JSON-ready transaction events matching ``Transaction``.

    Args:
        n: Number of transactions.
        seed: Random seed; the features equal ``synthetic_features(n, seed, shift)``.
        shift: As for ``synthetic_features``.

    Returns:
        One dict per transaction: every name in ``FEATURES`` plus ``card_id``
        and ``merchant``.
    """
    cols, _ = _draw(n, seed, shift)
    ids = np.random.default_rng([seed, 1])
    cards = ids.integers(0, max(n // 4, 1), n)
    merchants = ids.integers(0, 500, n)
    rows = []
    for i in range(n):
        cat = int(cols["merchant_category"][i])
        rows.append(
            {
                "card_id": f"card-{cards[i]:06d}",
                "merchant": f"m-{cat}-{merchants[i]:03d}",
                "amount": float(cols["amount"][i]),
                "hour": int(cols["hour"][i]),
                "merchant_category": cat,
                "distance_from_home_km": float(cols["distance_from_home_km"][i]),
                "velocity_1h": float(cols["velocity_1h"][i]),
                "card_age_days": int(cols["card_age_days"][i]),
                "is_online": bool(cols["is_online"][i]),
                "foreign": bool(cols["foreign"][i]),
            }
        )
    return rows


def features_of(rows: Iterable[Mapping[str, Any] | Transaction]) -> np.ndarray:
    """The model's input matrix for transactions (dicts or ``Transaction`` structs).

    Args:
        rows: Transactions carrying every name in ``FEATURES``.

    Returns:
        float32 ``(len(rows), len(FEATURES))``.
    """
    table = [[r[f] if isinstance(r, Mapping) else getattr(r, f) for f in FEATURES] for r in rows]
    return np.array(table, dtype=np.float32).reshape(-1, len(FEATURES))


def train_demo_model(seed: int = 7, n: int = TRAIN_ROWS) -> Any:
    """Fit the demo fraud model (deterministic for a given seed and size).

    Args:
        seed: Seed of both the training data and the model.
        n: Training rows.

    Returns:
        A fitted ``HistGradientBoostingClassifier`` taking ``FEATURES`` columns.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    x, y = synthetic_features(n, seed)
    # Early stopping is off: its validation split would make the model depend
    # on more than the seed, and 60 shallow trees are already cheap to score.
    model = HistGradientBoostingClassifier(
        max_iter=60, max_depth=5, learning_rate=0.1, early_stopping=False, random_state=seed
    )
    # One OpenMP thread: faster at this size (0.3 s against 1.3 s on 2 cores)
    # and not 50x slower when other processes keep the CPU busy.
    with threadpool_limits(limits=1, user_api="openmp"):
        return model.fit(x, y)


def evaluate(model: Any, seed: int, n: int = HOLDOUT_ROWS) -> dict[str, float]:
    """ROC AUC and base rate of a fitted demo model on fresh synthetic rows.

    Args:
        model: A fitted estimator with ``predict_proba``.
        seed: Seed of the held-out data (use one the model was not trained on).
        n: Held-out rows.

    Returns:
        ``{"auc": ..., "positive_rate": ..., "holdout_rows": ...}``.
    """
    from sklearn.metrics import roc_auc_score
    from threadpoolctl import threadpool_limits

    x, y = synthetic_features(n, seed)
    with threadpool_limits(limits=1, user_api="openmp"):
        scores = model.predict_proba(x)[:, 1]
    return {
        "auc": float(roc_auc_score(y, scores)),
        "positive_rate": float(y.mean()),
        "holdout_rows": float(n),
    }


def ensure_demo_model(registry: ModelRegistry, *, seed: int = 7) -> ModelVersion:
    """Register the demo model as ``fraud`` v1 (alias ``champion``) unless ``fraud`` exists.

    Safe when several processes call it at once: one trains, the others wait
    for it and then see its version.

    Args:
        registry: Where to register it.
        seed: Seed of the training data and model.

    Returns:
        What ``fraud`` resolves to (the champion, or the latest version).
    """
    if not registry.versions(DEMO_MODEL):
        with registry.lock(f"demo-{DEMO_MODEL}"):
            if not registry.versions(DEMO_MODEL):
                model = train_demo_model(seed)
                holdout_seed = seed + 1_000_003
                registry.register(
                    DEMO_MODEL,
                    model,
                    features=FEATURES,
                    metrics=evaluate(model, holdout_seed),
                    training_data={
                        "generator": "scorebus.models.demo.synthetic_features",
                        "rows": TRAIN_ROWS,
                        "seed": seed,
                        "holdout_seed": holdout_seed,
                    },
                    alias="champion",
                )
    return registry.resolve(DEMO_MODEL)
