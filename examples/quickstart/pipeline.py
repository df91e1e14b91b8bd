"""Quickstart: score IoT temperature readings with a model you register yourself."""

from __future__ import annotations

import msgspec
import numpy as np

from scorebus import App, Batch


class Reading(msgspec.Struct):
    device: str
    temperature_c: float
    humidity: float


app = App("sensors")


@app.scorer(
    subscribe="readings",
    schema=Reading,
    model="overheat@champion",  # resolved in the registry (.scorebus/models)
    batch=Batch(max_size=256, max_wait_ms=10),
    publish="alerts",  # each result is also published, through the outbox
)
def overheat(readings: list[Reading], scores: np.ndarray) -> list[dict[str, object]]:
    return [
        {"device": r.device, "p_overheat": round(s, 4), "alert": s > 0.8}
        for r, s in zip(readings, scores.tolist(), strict=True)
    ]
