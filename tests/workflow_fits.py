"""Training functions and datasets for the workflow-job tests: real, small and fast.

The data is the demo fraud generator's (``scorebus.models.demo``) written to a
CSV file; ``fit`` trains a logistic regression on it and measures ROC AUC on a
fixed held-out sample. ``params={"use": [...]}`` restricts the features, which
gives a reliably worse model (a candidate that must be rejected).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from scorebus.errors import TransientError
from scorebus.models.base import Model
from scorebus.models.demo import FEATURES, synthetic_features
from scorebus.workflows import Trained, TrainingData

LABEL = "fraud"
HOLDOUT_SEED = 99


def write_dataset(path: Path, *, n: int = 4000, seed: int = 1) -> str:
    """A labelled CSV of ``n`` synthetic transactions; returns its path as a string."""
    x, y = synthetic_features(n, seed)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*FEATURES, LABEL])
        for row, label in zip(x.tolist(), y.tolist(), strict=True):
            writer.writerow([*row, label])
    return str(path)


def read_dataset(uri: str) -> tuple[np.ndarray, np.ndarray]:
    with open(uri, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or LABEL not in rows[0]:
        raise ValueError(f"{uri}: no {LABEL!r} label column")
    x = np.array([[float(r[c]) for c in FEATURES] for r in rows], dtype=np.float32)
    return x, np.array([int(r[LABEL]) for r in rows])


def fit(data: TrainingData) -> Trained:
    """Logistic regression on ``data.uri``; ``params["use"]`` picks the features."""
    use = list(data.params.get("use", FEATURES))
    cols = [FEATURES.index(c) for c in use]
    x, y = read_dataset(data.uri)
    model = LogisticRegression(max_iter=1000).fit(x[:, cols], y)
    hx, hy = synthetic_features(4000, HOLDOUT_SEED)
    auc = float(roc_auc_score(hy, model.predict_proba(hx[:, cols])[:, 1]))
    return Trained(model=model, metrics={"auc": auc}, features=use, rows=len(y))


def failing_fit(data: TrainingData) -> Trained:
    raise ValueError(f"{data.uri}: the label column is empty")


def flaky_store_fit(data: TrainingData) -> Trained:
    raise TransientError("feature store unavailable")


def evaluate_auc(model: Model, holdout: str) -> dict[str, float]:
    """ROC AUC of a registered version (its own features) on a holdout CSV."""
    x, y = read_dataset(holdout)
    cols = [FEATURES.index(c) for c in model.signature.inputs]
    return {"auc": float(roc_auc_score(y, model.predict(x[:, cols])))}
