"""The AI-workflow loop as one app: score, watch for drift, re-train, promote, hot-swap.

    transactions   -> fraud (scorer, follows fraud@champion) -> results store
    transactions   -> drift_fraud    -> drift.detected
    data.arrived   -> train_fraud    -> model.trained
    drift.detected -> retrain_fraud  -> model.trained
    model.trained  -> promote_fraud  -> model.promoted | model.rejected

A promoted version moves ``fraud@champion``; the running scorer notices within
``model_poll_s``, smoke-tests the version on its recent events and swaps it in
between batches (``model.swapped``). ``python -m examples.workflows.run`` drives
the whole loop; ``scorebus workflows examples.workflows.pipeline:app`` draws it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scorebus import App, Batch
from scorebus.events import Event
from scorebus.models.demo import Transaction
from scorebus.workflows import drift_job, install

from .fit import evaluate_auc, fit

WORKDIR = Path(".scorebus/workflows-demo")
TOPIC = "transactions"
HOLDOUT = "data/holdout.csv"  # the latest labelled sample: what promotion compares on
RECENT = "data/recent.csv"  # the latest labelled window: what re-training fits on
MARGIN = 0.01
# Drift: the last 500 transactions against the champion's training data, every
# 250. PSI alone decides (ks_pvalue=None): on windows this small its noise stays
# below 0.2, while tripled amounts give about 0.8.
DRIFT_WINDOW, DRIFT_EVERY, PSI_THRESHOLD = 500, 250, 0.3


def build_app(workdir: Path | str = WORKDIR, *, events_topic: str = "events") -> App:
    """The loop's app, keeping its registry and datasets under ``workdir``.

    Args:
        workdir: holds ``models/`` (the registry) and ``data/`` (the CSV files).
        events_topic: where the lifecycle events travel.
    """
    root = Path(workdir)
    registry = str(root / "models")
    app = App("fraud-loop", events_topic=events_topic)

    @app.scorer(
        subscribe=TOPIC,
        schema=Transaction,
        model="fraud@champion",  # followed: a promotion reaches the running scorer
        batch=Batch(max_size=64, max_wait_ms=5),
    )
    def fraud(events: list[Transaction], scores: np.ndarray) -> list[dict[str, Any]]:
        return [
            {"card_id": e.card_id, "p_fraud": round(s, 4)}
            for e, s in zip(events, scores.tolist(), strict=True)
        ]

    # Its own subscription on the scorer's topic: it sees the same traffic.
    app.on(TOPIC, topic=TOPIC)(
        drift_job(
            "fraud@champion",
            registry=registry,
            window=DRIFT_WINDOW,
            every=DRIFT_EVERY,
            psi_threshold=PSI_THRESHOLD,
            ks_pvalue=None,
            topic=events_topic,
        )
    )

    def recent_data(event: Event) -> str:
        return str(root / RECENT)

    install(
        app,
        "fraud",
        fit,
        registry=registry,
        metric="auc",
        margin=MARGIN,
        evaluate=evaluate_auc,  # both versions measured on the same, latest holdout
        holdout=str(root / HOLDOUT),
        recent_data=recent_data,
    )
    return app


app = build_app()
