"""The Pub/Sub emulator's own rate, without scorebus: the ceiling the adapter is measured against.

``raw_rate(n, emulator, consumers)`` first publishes ``n`` small JSON events as
scorebus lays them out (CloudEvents ``ce-*`` attributes, the data as the message
body) in publish requests of 1,000 (four in flight), untimed; then ``consumers``
pull loops (one per scorebus worker process in ``make bench``: each worker keeps
one pull in flight) drain that backlog with unary ``Pull`` of up to 1,000
messages (the broker's pull size), acknowledging each pull's ack ids with one
``Acknowledge`` call without waiting for it before the next pull (the broker
acks each batch from the batch's own task, not from its pull loop); every ack
is awaited before the clock stops. The rate is the drain's, windowed as
scorebus's row is (which runs from its first committed batch to its last and
leaves that first batch out): from the first pull's reply to the last ack,
leaving out that reply's messages. It is the same work scorebus's Pub/Sub row
is timed on (a backlog published beforehand, drained: pull, score, store, ack),
so scorebus / raw reads as the share of the emulator's own pull+ack rate that
scorebus keeps.

The timed drain follows one untimed drain of ``n`` on a topic of its own
(``warm_ups``): ``make bench`` starts the emulator just before this row, and a
JVM that has not yet compiled its hot paths serves the first tens of thousands
of messages at a third to a half of its later rate. Timed cold, the ceiling
came out low and scorebus, timed afterwards on the warmed emulator, looked
closer to it than it is.

Pull mode: unary pull of 1,000 with batched acks, because against the emulator
a StreamingPull stream (what ``SubscriberClient.subscribe`` uses) moves a few
thousand messages a second per stream, while unary pulls reach tens of
thousands. The calls go straight to the gRPC stubs with protobuf messages on a
``grpc.aio`` channel, as the broker's hot path does (the generated GAPIC
client's proto-plus wrapping costs about a third of the rate, see
docs/connectors/pubsub.md).

It runs in a scratch project whose topics and subscriptions are deleted
afterwards, and prints nothing; ``python -m benchmarks.brokers.pubsub_raw
HOST:PORT [N [CONSUMERS [WARM_UPS]]]`` prints the rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from typing import Any

import grpc
from google.protobuf import empty_pb2
from google.pubsub_v1.types import pubsub as T

_BATCH = 1000
_BODY = b'{"amount": 125.5, "card_id": "c-000042", "merchant": "m-17", "country": "DE"}'
_Message = T.PubsubMessage.pb()
_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
MEASURES = "pull + ack of a published backlog, one pull loop per worker"


def _message(i: int) -> Any:
    return _Message(
        data=_BODY,
        attributes={
            "ce-specversion": "1.0",
            "ce-id": f"{i:032x}",
            "ce-type": "transaction.created",
            "ce-source": "bench",
            "ce-time": "2026-01-01T00:00:00.000000Z",
            "content-type": "application/json",
        },
    )


class _Stubs:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        def method(service: str, name: str, request: Any, response: Any) -> Any:
            return channel.unary_unary(
                f"/google.pubsub.v1.{service}/{name}",
                request_serializer=request.SerializeToString,
                response_deserializer=response.FromString,
            )

        self.create_topic = method("Publisher", "CreateTopic", T.Topic.pb(), T.Topic.pb())
        self.delete_topic = method(
            "Publisher", "DeleteTopic", T.DeleteTopicRequest.pb(), empty_pb2.Empty
        )
        self.publish = method("Publisher", "Publish", T.PublishRequest.pb(), T.PublishResponse.pb())
        self.create_sub = method(
            "Subscriber", "CreateSubscription", T.Subscription.pb(), T.Subscription.pb()
        )
        self.delete_sub = method(
            "Subscriber", "DeleteSubscription", T.DeleteSubscriptionRequest.pb(), empty_pb2.Empty
        )
        self.pull = method("Subscriber", "Pull", T.PullRequest.pb(), T.PullResponse.pb())
        self.ack = method("Subscriber", "Acknowledge", T.AcknowledgeRequest.pb(), empty_pb2.Empty)


async def raw_rate(n: int, emulator: str, consumers: int = 1, *, warm_ups: int = 1) -> float:
    """Events per second through the emulator at ``emulator`` (HOST:PORT); prints nothing.

    Args:
        n: events to publish, then drain.
        emulator: the emulator's HOST:PORT.
        consumers: pull loops draining at once (one per scorebus worker process,
            each of which keeps one pull in flight).
        warm_ups: untimed drains of ``n`` first, on a topic of their own: a
            freshly started emulator's JVM serves pulls several times slower
            until it has compiled its hot paths, and scorebus's row, timed after
            this one, would otherwise meet a warmer emulator than this did.
    """
    channel = grpc.aio.insecure_channel(emulator, options=_OPTIONS)
    stubs = _Stubs(channel)
    project = f"scorebus-bench-{uuid.uuid4().hex[:12]}"
    try:
        for i in range(warm_ups):
            await _drain(stubs, project, f"warm-up-{i}", n, consumers)
        return await _drain(stubs, project, "raw", n, consumers)
    finally:
        await channel.close()


async def _drain(stubs: _Stubs, project: str, name: str, n: int, consumers: int) -> float:
    """Publish ``n`` to a new topic, drain its subscription; the drain's rate."""
    topic = f"projects/{project}/topics/{name}"
    sub = f"projects/{project}/subscriptions/{name}"
    messages = [_message(i) for i in range(n)]
    try:
        await stubs.create_topic(T.Topic.pb()(name=topic), timeout=30)
        await stubs.create_sub(
            T.Subscription.pb()(name=sub, topic=topic, ack_deadline_seconds=60), timeout=30
        )

        async def publish() -> None:
            slots = asyncio.Semaphore(4)

            async def one(chunk: list[Any]) -> None:
                async with slots:
                    request = T.PublishRequest.pb()(topic=topic, messages=chunk)
                    await stubs.publish(request, timeout=30)

            await asyncio.gather(*(one(messages[i : i + _BATCH]) for i in range(0, n, _BATCH)))

        first: list[tuple[float, int]] = []  # (when, how many) of the first non-empty reply

        async def consume() -> None:
            received, acks = 0, []

            async def puller() -> None:
                nonlocal received
                while received < n:
                    request = T.PullRequest.pb()(subscription=sub, max_messages=_BATCH)
                    reply = await stubs.pull(request, timeout=10.0)
                    ids = [m.ack_id for m in reply.received_messages]
                    received += len(ids)
                    if ids and not first:
                        first.append((time.perf_counter(), len(ids)))
                    if ids:
                        request = T.AcknowledgeRequest.pb()(subscription=sub, ack_ids=ids)
                        acks.append(asyncio.ensure_future(stubs.ack(request, timeout=30)))

            # The first puller to see the whole backlog received ends the drain; the
            # others are waiting on an empty subscription and are cancelled.
            pullers = [asyncio.ensure_future(puller()) for _ in range(consumers)]
            done, rest = await asyncio.wait(pullers, return_when=asyncio.FIRST_COMPLETED)
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)
            for task in done:
                task.result()
            await asyncio.gather(*acks)

        await asyncio.wait_for(publish(), timeout=max(60.0, n / 2000))
        await asyncio.wait_for(consume(), timeout=max(60.0, n / 2000))
        ended = time.perf_counter()
    finally:
        for method, request in (
            (stubs.delete_sub, T.DeleteSubscriptionRequest.pb()(subscription=sub)),
            (stubs.delete_topic, T.DeleteTopicRequest.pb()(topic=topic)),
        ):
            with contextlib.suppress(grpc.RpcError):  # never created, or the emulator is gone
                await method(request, timeout=10.0)
    (started, counted_before), *_ = first
    return (n - counted_before) / (ended - started)


if __name__ == "__main__":
    host = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    consumers = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    warm_ups = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    rate = asyncio.run(raw_rate(count, host, consumers, warm_ups=warm_ups))
    print(f"{rate:,.0f} msg/s")
