"""The demo pipeline under another batch policy, importable by worker processes.

``WorkerPool("benchmarks.policy_apps:size_32", ...)`` runs the demo scorer with
``Batch(max_size=32, adaptive=False)`` (default ``max_wait_ms``); ``...:adaptive``
runs it with ``Batch(adaptive=True)`` (default size and wait) where the runtime
has that policy. Each app has the demo
app's name, scorer, schema, model and start-up hook, so it consumes the same
subscription and writes the same result rows: only the batch policy differs.
"""

from __future__ import annotations

from dataclasses import fields
from functools import cache
from typing import Any

from scorebus.app import App
from scorebus.demo import MAX_EVENT_BYTES, SCORER, TOPIC, build_model, fraud
from scorebus.demo import app as demo_app
from scorebus.models.demo import Transaction
from scorebus.runtime.config import Batch

FIXED_SIZES = (1, 8, 32, 128, 512)


def has_adaptive() -> bool:
    """Whether this runtime's ``Batch`` has an adaptive policy."""
    return "adaptive" in {f.name for f in fields(Batch)}


def policy_names(sizes: tuple[int, ...] = FIXED_SIZES, adaptive: bool = True) -> list[str]:
    """The policies to sweep: ``size_N`` for each fixed size, then ``adaptive`` if present."""
    return [f"size_{n}" for n in sizes] + (["adaptive"] if adaptive and has_adaptive() else [])


def label(policy: str) -> str:
    """A policy name as the report and the plot show it."""
    if policy == "adaptive":
        return f"adaptive (max_size {Batch().max_size})"
    return f"max_size {policy.removeprefix('size_')}"


def batch_for(policy: str) -> Batch:
    """The ``Batch`` a policy name stands for: fixed sizes never adapt."""
    if policy == "adaptive":
        return Batch(**{"adaptive": True})
    fixed = {"adaptive": False} if has_adaptive() else {}
    return Batch(max_size=int(policy.removeprefix("size_")), **fixed)


def demo_policy() -> str:
    """The demo scorer's own batch policy, as the report states it."""
    return repr(demo_app.scorers[0].batch)


@cache
def build(policy: str) -> App:
    """The demo app with its scorer's batch policy replaced."""
    policy_app = App(demo_app.name)
    policy_app.on_startup(build_model)
    policy_app.scorer(
        subscribe=TOPIC,
        schema=Transaction,
        model="fraud@champion",
        batch=batch_for(policy),
        max_event_bytes=MAX_EVENT_BYTES,
        name=SCORER,
    )(fraud)
    return policy_app


def __getattr__(name: str) -> Any:
    if name == "adaptive" or name.startswith("size_"):
        return build(name)
    raise AttributeError(name)
