"""Redis Streams' own rate, without scorebus: the ceiling the adapter is measured against.

``raw_rate(n)`` publishes ``n`` small JSON events as scorebus lays them out (the
CloudEvents ``ce-*`` fields plus ``data``) with XADD in pipelines of 500, while a
consumer group reads them with XREADGROUP COUNT 500 and acknowledges each batch
with one XACK; the rate counts an event once it has been published, delivered
and acked. It runs on a scratch stream that is deleted afterwards and prints
nothing. The server is ``SCOREBUS_BENCH_REDIS`` or ``redis://127.0.0.1:6379/0``.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

import redis.asyncio as aioredis

_BATCH = 500
MEASURES = "publish + consume + ack, concurrent"
_BODY = b'{"amount": 125.5, "card_id": "c-000042", "merchant": "m-17", "country": "DE"}'


def _fields(i: int) -> dict[str, str | bytes]:
    return {
        "ce-specversion": "1.0",
        "ce-id": f"{i:032x}",
        "ce-type": "transaction.created",
        "ce-source": "bench",
        "ce-time": "2026-01-01T00:00:00.000000Z",
        "content-type": "application/json",
        "data": _BODY,
    }


async def raw_rate(n: int) -> float:
    """Events per second through Redis Streams for ``n`` events; prints nothing."""
    url = os.environ.get("SCOREBUS_BENCH_REDIS", "redis://127.0.0.1:6379/0")
    client = aioredis.Redis.from_url(url)
    stream, group = f"scorebus-bench-raw-{uuid.uuid4().hex[:12]}", "bench"
    try:
        await client.xgroup_create(stream, group, id="0", mkstream=True)

        async def publish() -> None:
            for start in range(0, n, _BATCH):
                pipe = client.pipeline(transaction=False)
                for i in range(start, min(n, start + _BATCH)):
                    pipe.xadd(stream, _fields(i))
                await pipe.execute()

        async def consume() -> None:
            acked = 0
            while acked < n:
                reply: Any = await client.xreadgroup(
                    group, "c1", {stream: ">"}, count=_BATCH, block=1000
                )
                ids = [entry_id for _, entries in reply or () for entry_id, _ in entries]
                if ids:
                    acked += await client.xack(stream, group, *ids)

        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(publish(), consume()), timeout=max(60.0, n / 2000))
        elapsed = time.perf_counter() - started
    finally:
        await client.delete(stream)
        await client.aclose()
    return n / elapsed
