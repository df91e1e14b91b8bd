"""RabbitMQ's own rate, without scorebus: the ceiling the adapter is measured against.

One durable quorum queue (what a scorebus subscription is), persistent messages
published with publisher confirms in windows of 1,000, consumed concurrently
with prefetch 500 and acknowledged with ``multiple=True`` every 250 messages.
The rate counts a message once it has been published, confirmed, delivered and
acked. Server: ``SCOREBUS_BENCH_AMQP`` (default ``amqp://guest:guest@127.0.0.1:5672/``).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import cast

import aio_pika
import aiormq
from aiormq import spec
from aiormq.abc import DeliveredMessage

MEASURES = "confirmed publish + consume + ack, concurrent"
_BODY = b'{"amount": 125.5, "card_id": "c-000042", "merchant": "m-17", "country": "DE"}'
_WINDOW = 1000
_PREFETCH = 500
_ACK_EVERY = 250


async def raw_rate(n: int) -> float:
    """Messages per second through RabbitMQ for ``n`` messages; prints nothing."""
    url = os.environ.get("SCOREBUS_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
    conn = await aio_pika.connect_robust(url)
    name = f"scorebus-bench-raw-{uuid.uuid4().hex[:12]}"
    try:
        pub = cast(aiormq.Channel, await (await conn.channel()).get_underlay_channel())
        sub = cast(
            aiormq.Channel,
            await (await conn.channel(publisher_confirms=False)).get_underlay_channel(),
        )
        await sub.basic_qos(prefetch_count=_PREFETCH)
        await sub.queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
        received = 0
        done = asyncio.Event()

        async def on_message(msg: DeliveredMessage) -> None:
            nonlocal received
            received += 1
            if received % _ACK_EVERY == 0 or received == n:
                await sub.basic_ack(msg.delivery_tag or 0, multiple=True)
            if received == n:
                done.set()

        consumer = await sub.basic_consume(name, on_message)
        props = spec.Basic.Properties(content_type="application/json", delivery_mode=2)
        started = time.perf_counter()
        for start in range(0, n, _WINDOW):
            confirms = await asyncio.gather(
                *(
                    pub.basic_publish(_BODY, routing_key=name, properties=props, wait=False)
                    for _ in range(min(_WINDOW, n - start))
                )
            )
            if not all(isinstance(c, spec.Basic.Ack) for c in confirms):
                raise RuntimeError("RabbitMQ nacked a benchmark message")
        await asyncio.wait_for(done.wait(), timeout=max(60.0, n / 1000))
        elapsed = time.perf_counter() - started
        await sub.basic_cancel(consumer.consumer_tag or "")
        await sub.queue_delete(name)
    finally:
        await conn.close()
    return n / elapsed
