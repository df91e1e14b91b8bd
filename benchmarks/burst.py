"""A 10x burst against a steady open-loop load: does the in-flight cap hold memory?

One worker process of the demo app (default ``FlowControl``: 8,192 messages or
64 MiB in flight per scorer) runs at a steady arrival rate, then the publisher
sends ``factor`` times that rate for a couple of seconds, then the steady rate
again. A thread samples the worker's resident memory (psutil) every 50 ms.
Steady memory is the median over the steady phase (its first second left out);
peak is the maximum from the burst's start to the end of the run, including
the drain of the backlog the burst left in the broker.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import psutil

from scorebus.app import Settings
from scorebus.runtime.config import FlowControl

from .load import DEMO_APP, phase, running


class RssSampler:
    """Samples the summed RSS of some processes (and their children) in a thread."""

    def __init__(self, pids: list[int], interval_s: float = 0.05) -> None:
        self.procs = [psutil.Process(pid) for pid in pids]
        self.interval_s = interval_s
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        total = 0
        for p in self.procs:
            try:
                total += p.memory_info().rss
                total += sum(c.memory_info().rss for c in p.children(recursive=True))
            except psutil.Error:  # the process has just exited
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), self._rss()))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, t0: float, t1: float) -> np.ndarray:
        return np.array([rss for t, rss in self.samples if t0 <= t < t1], dtype=np.float64)


def burst(
    settings: Settings,
    data: list[bytes],
    rate: float,
    *,
    factor: float = 10.0,
    steady_s: float = 5.0,
    burst_s: float = 2.0,
    after_s: float = 4.0,
) -> dict[str, Any]:
    """Steady ``rate``, then ``factor * rate`` for ``burst_s``, then ``rate`` again."""
    segments = [(rate, steady_s), (rate * factor, burst_s), (rate, after_s)]
    with (
        running(settings, DEMO_APP, workers=1) as pool,
        RssSampler([p.pid for p in pool.procs]) as rss,
    ):
        result = phase(settings, data, segments, "burst", drain_s=120.0)
        time.sleep(0.5)
    start = result["start"]
    steady = rss.between(start + min(1.0, steady_s / 2), start + steady_s)
    peak = rss.between(start + steady_s, float("inf"))
    steady_mb = float(np.median(steady)) / 2**20 if len(steady) else float("nan")
    peak_mb = float(peak.max()) / 2**20 if len(peak) else float("nan")
    cap = FlowControl()
    return {
        **result,
        "rate": rate,
        "burst_rate": rate * factor,
        "factor": factor,
        "seconds": (steady_s, burst_s, after_s),
        "steady_rss_mb": steady_mb,
        "peak_rss_mb": peak_mb,
        "ratio": peak_mb / steady_mb,
        "samples": len(rss.samples),
        "cap_messages": cap.max_messages,
        "cap_mib": cap.max_bytes >> 20,
    }
