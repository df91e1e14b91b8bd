"""One row per broker: scorebus end to end beside the broker's own raw rate.

Both figures come from the same run on the same machine: the raw rate is the
broker's client with batching comparable to scorebus's
(``benchmarks/brokers/<name>_raw.py``, whose ``MEASURES`` says what it times:
for Pub/Sub, the pull + ack of a backlog published beforehand, the same work
the scorebus row is timed on); the scorebus rate is the
demo pipeline draining a backlog through that broker (publish done before),
with the p99 of the in-worker latency (pull to commit).

Servers are found the way the contract tests find them (``tests/contract``);
a broker that is not reachable is reported as skipped, with the reason.
"""

from __future__ import annotations

import asyncio
import importlib
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from scorebus.app import Settings

from .scenarios import pipeline_with_latency


def _url_factories() -> list[tuple[str, Any]]:
    from tests.contract import backends

    return [(p.id, p.values[0]) for p in backends.url_params()]


def _measures(name: str) -> str:
    return str(importlib.import_module(f"benchmarks.brokers.{name}_raw").MEASURES)


async def _raw(name: str, url: str, n: int, workers: int) -> float:
    module = importlib.import_module(f"benchmarks.brokers.{name}_raw")
    if name == "pubsub":
        emulator = parse_qs(urlsplit(url).query)["emulator"][0]
        return float(await module.raw_rate(n, emulator, consumers=workers))
    return float(await module.raw_rate(n))


def broker_rows(registry: Path, data: list[bytes], *, workers: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name, factory in _url_factories():
        with tempfile.TemporaryDirectory(prefix=f"scorebus-bench-{name}-") as folder:
            rows.append(_row(name, factory, Path(folder), registry, data, workers))
    return rows


def _row(
    name: str, factory: Any, tmp: Path, registry: Path, data: list[bytes], workers: int
) -> dict[str, Any]:
    try:
        url = factory(tmp)
    except BaseException as exc:  # pytest.skip/fail when the server is missing
        return {"broker": name, "skipped": str(exc) or type(exc).__name__}
    try:
        raw = asyncio.run(_raw(name, url, len(data), workers))
        settings = Settings(broker=url, store=f"sqlite:///{tmp}/scores.db", registry=registry)
        result = pipeline_with_latency(settings, data, workers)
    except Exception as exc:
        return {"broker": name, "skipped": f"{type(exc).__name__}: {exc}"}
    print(
        f"  {name}: raw {raw:,.0f}/s, scorebus {result['eps']:,.0f}/s, "
        f"p99 in worker {result['p99_service_ms']:.1f} ms"
    )
    return {"broker": name, "raw_eps": raw, "raw_measures": _measures(name), **result}
