"""Training for the loop: a logistic regression over a labelled CSV of transactions.

``write_dataset`` makes the CSV files (the demo's synthetic generator: no
downloads, the same rows on every machine); ``fit`` is what ``train_job`` and
``retrain_job`` call; ``evaluate_auc`` is how ``promote_job`` measures the
candidate and the champion on the same holdout.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from scorebus.models.base import Model
from scorebus.models.demo import FEATURES, synthetic_features
from scorebus.workflows import Trained, TrainingData

LABEL = "fraud"
AMOUNT = FEATURES.index("amount")


def write_dataset(path: Path, *, rows: int, seed: int, amount_factor: float = 1.0) -> str:
    """Write ``rows`` labelled transactions to ``path`` (atomically); returns the path.

    Args:
        path: the CSV file to write.
        rows: how many transactions.
        seed: the generator's seed.
        amount_factor: multiplies every amount (``3.0``: the shifted world of the
            loop, where amounts are reported in a currency worth a third).
    """
    x, y = synthetic_features(rows, seed)
    x[:, AMOUNT] *= amount_factor
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with partial.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*FEATURES, LABEL])
        for row, label in zip(x.tolist(), y.tolist(), strict=True):
            writer.writerow([*row, label])
    os.replace(partial, path)  # a reader sees the old file or the new one, never half
    return str(path)


def read_dataset(uri: str) -> tuple[np.ndarray, np.ndarray]:
    """The features (in ``FEATURES`` order) and labels of a CSV ``write_dataset`` wrote."""
    with open(uri, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or LABEL not in rows[0]:
        raise ValueError(f"{uri}: no rows with a {LABEL!r} label")
    x = np.array([[float(r[c]) for c in FEATURES] for r in rows], dtype=np.float32)
    return x, np.array([int(r[LABEL]) for r in rows])


def fit(data: TrainingData) -> Trained:
    """Fit on ``data.uri``; the inputs go back too, as the version's drift reference."""
    x, y = read_dataset(data.uri)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    train_auc = float(roc_auc_score(y, model.predict_proba(x)[:, 1]))
    return Trained(
        model=model, metrics={"train_auc": train_auc}, features=FEATURES, rows=len(y), X=x
    )


def evaluate_auc(model: Model, holdout: str) -> dict[str, float]:
    """ROC AUC of a registered version on the holdout CSV."""
    x, y = read_dataset(holdout)
    return {"auc": float(roc_auc_score(y, np.asarray(model.predict(x))))}
