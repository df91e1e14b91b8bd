"""NATS JetStream's own rate, the ceiling for scorebus on NATS.

``raw_rate(n)`` publishes ``n`` small JSON messages with nats-py's async
publish (each with a ``Nats-Msg-Id``, as scorebus sends, and every PubAck
awaited), then pulls them with ``fetch(batch=500)`` from a durable explicit-ack
consumer and acks each one, and returns messages per second over the whole
publish + pull + ack. It runs on a scratch stream that is deleted afterwards and
prints nothing. The server is ``SCOREBUS_BENCH_NATS`` or ``nats://127.0.0.1:4222``.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import nats
from nats.js import api

BATCH = 500
MEASURES = "publish, then pull + ack, both timed"
PAYLOAD = b'{"amount": 182.5, "merchant_risk": 0.31, "hour": 14, "country": "DE", "age_days": 812}'


async def raw_rate(n: int) -> float:
    """Messages per second for publish + pull (fetch batches of 500) + ack of ``n`` messages."""
    nc = await nats.connect(os.environ.get("SCOREBUS_BENCH_NATS", "nats://127.0.0.1:4222"))
    js = nc.jetstream()
    stream = f"sbbench-{uuid.uuid4().hex[:10]}"
    subject = f"{stream}.tx"
    try:
        await js.add_stream(name=stream, subjects=[f"{stream}.>"])
        started = time.perf_counter()
        acks = [
            await js.publish_async(subject, PAYLOAD, headers={"Nats-Msg-Id": str(i)})
            for i in range(n)
        ]
        await asyncio.gather(*acks)
        sub = await js.pull_subscribe(
            subject,
            durable="bench",
            stream=stream,
            config=api.ConsumerConfig(ack_wait=60, max_ack_pending=2 * BATCH),
        )
        done = 0
        while done < n:
            msgs = await sub.fetch(min(BATCH, n - done), timeout=5)
            for msg in msgs:
                await msg.ack()
            done += len(msgs)
        await nc.flush()
        return n / (time.perf_counter() - started)
    finally:
        await js.delete_stream(stream)
        await nc.close()
