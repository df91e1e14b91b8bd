"""The demo pipeline: card transactions scored by the shipped fraud model.

An ordinary app, importable as ``scorebus.demo:app``: ``scorebus demo`` runs it,
and ``scorebus run scorebus.demo:app --until-idle 5`` finishes an interrupted demo.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..app import App, Settings
from ..models.demo import Transaction, ensure_demo_model
from ..models.registry import open_registry
from ..runtime.config import Batch

TOPIC = "transactions"
SCORER = "fraud"
MAX_EVENT_BYTES = 16 * 1024
FLAG_AT = 0.5

app = App("demo")


@app.on_startup
def build_model(settings: Settings) -> None:
    """Train and register the demo model on first use (deterministic, no downloads)."""
    ensure_demo_model(open_registry(settings.registry))


@app.scorer(
    subscribe=TOPIC,
    schema=Transaction,
    model="fraud@champion",
    batch=Batch(max_size=512, max_wait_ms=5),
    max_event_bytes=MAX_EVENT_BYTES,
    name=SCORER,
)
def fraud(events: list[Transaction], scores: np.ndarray) -> list[dict[str, Any]]:
    return [{"fraud_probability": s, "flagged": s >= FLAG_AT} for s in scores.tolist()]
