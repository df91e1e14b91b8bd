"""Where an event's time goes: each stage of the hot path, timed one after another.

The worker overlaps these stages (pulls, the executor and the two SQLite
threads run side by side), so their sum is not its latency; it is the CPU an
event costs, which is what bounds throughput on two cores. Measured in one
event loop on the embedded broker and the SQLite results store, with the same
calls the scoring loop makes, batch 512, backlog published beforehand.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from scorebus.app import Settings
from scorebus.brokers import open_broker
from scorebus.demo import SCORER, TOPIC
from scorebus.demo import app as demo_app
from scorebus.models.registry import Registry
from scorebus.runtime.results import score_results
from scorebus.runtime.rollout import BatchModels, ModelSet, model_id
from scorebus.sinks import open_sink

from .load import SUBSCRIPTION
from .scenarios import publish_all

STAGES = (
    ("lease", "pull: lease + build deliveries (broker)"),
    ("validate", "decode and validate (schema)"),
    ("score", "features + predict + fn (model)"),
    ("rows", "result rows"),
    ("commit", "commit results (store)"),
    ("ack", "ack (broker)"),
)


def stages(settings: Settings, data: list[bytes], batch: int = 512) -> dict[str, Any]:
    """Microseconds per event of each stage, and the serial total."""
    return asyncio.run(_stages(settings, data, batch))


async def _stages(settings: Settings, data: list[bytes], batch: int) -> dict[str, Any]:
    await publish_all(settings, data)
    (spec,) = [s for s in demo_app.scorers if s.name == SCORER]
    model = Registry(Path(settings.registry)).load("fraud@champion")
    models = ModelSet(spec, model, None)
    spent = dict.fromkeys((k for k, _ in STAGES), 0.0)
    sink = open_sink(settings.store)
    done = 0
    async with open_broker(settings.broker) as broker:
        sub = await broker.subscription(TOPIC, SUBSCRIPTION)
        await sink.open()
        try:
            while done < len(data):
                t0 = time.perf_counter()
                deliveries = await sub.pull(batch, 1.0)
                if not deliveries:
                    break
                t1 = time.perf_counter()
                now = time.time()
                items = [(d, spec.schema.decode(d.event.data), now) for d in deliveries]
                t2 = time.perf_counter()
                scored = models.score(BatchModels(model), [x for _, x, _ in items])
                t3 = time.perf_counter()
                rows = score_results(spec.name, items, scored.outputs, model_id(model), now)
                t4 = time.perf_counter()
                await sink.write(rows, [])
                t5 = time.perf_counter()
                await sub.ack(deliveries)
                t6 = time.perf_counter()
                for key, a, b in zip(
                    spent, (t0, t1, t2, t3, t4, t5), (t1, t2, t3, t4, t5, t6), strict=True
                ):
                    spent[key] += b - a
                done += len(deliveries)
        finally:
            await sink.close()
    per_event = {k: v / max(done, 1) * 1e6 for k, v in spent.items()}
    return {"events": done, "us": per_event, "total_us": sum(per_event.values())}


def table(s: dict[str, Any], limit_eps: float) -> str:
    """The stages as a markdown table, beside the limit's cost per event."""
    total = s["total_us"]
    lines = ["| stage | µs per event | share |", "|---|---|---|"]
    for key, label in STAGES:
        us = s["us"][key]
        lines.append(f"| {label} | {us:.2f} | {us / total:.0%} |")
    lines.append(f"| **serial total** | **{total:.2f}** | 100% |")
    lines.append(
        f"| the limit (decode + bare batched predict), for scale | {1e6 / limit_eps:.2f} | |"
    )
    return "\n".join(lines)
