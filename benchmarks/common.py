"""Shared set-up for the benchmarks: a scratch state folder with the demo model."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from scorebus.app import Settings
from scorebus.models.demo import ensure_demo_model
from scorebus.models.registry import Registry


@contextmanager
def scratch(registry_cache: Path) -> Iterator[Settings]:
    """A fresh broker and store, sharing one trained demo model."""
    root = Path(tempfile.mkdtemp(prefix="scorebus-bench-"))
    try:
        yield Settings(
            broker=f"sqlite:///{root}/bus.db",
            store=f"sqlite:///{root}/scores.db",
            registry=registry_cache,
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def demo_registry(folder: Path) -> Registry:
    reg = Registry(folder)
    ensure_demo_model(reg)
    return reg


def pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
