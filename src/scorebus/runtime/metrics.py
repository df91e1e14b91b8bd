"""Counters and a latency reservoir per loop, cheap enough for the hot path
(one update per batch, not per event)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class LoopMetrics:
    scored: int = 0
    dead_lettered: int = 0
    retried: int = 0
    batches: int = 0
    handled: int = 0
    last_activity: float = field(default_factory=time.monotonic)
    _service_ms: list[np.ndarray] = field(default_factory=list)

    def record_batch(self, size: int, service_ms: np.ndarray) -> None:
        self.scored += size
        self.batches += 1
        self._service_ms.append(service_ms)
        if len(self._service_ms) > 2048:
            del self._service_ms[:1024]
        self.touch()

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def percentiles(self, qs: tuple[float, ...] = (50, 99)) -> tuple[float, ...]:
        if not self._service_ms:
            return tuple(float("nan") for _ in qs)
        data = np.concatenate(self._service_ms)
        return tuple(float(x) for x in np.percentile(data, qs))
