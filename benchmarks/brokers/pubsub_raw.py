"""The Pub/Sub emulator's own rate, without scorebus: the ceiling the adapter is measured against.

``raw_rate(n, emulator)`` publishes ``n`` small JSON events as scorebus lays them
out (CloudEvents ``ce-*`` attributes, the data as the message body) in publish
requests of 1,000 (four in flight), while one consumer pulls with unary
``Pull`` of up to 1,000 messages and acknowledges each pull's ack ids with one
``Acknowledge`` call, not waiting for it before the next pull. The rate counts
an event once it has been published, delivered and acked.

Pull mode: unary pull of 1,000 with batched acks, because against the emulator
a StreamingPull stream (what ``SubscriberClient.subscribe`` uses) moves a few
thousand messages a second per stream, while unary pulls reach tens of
thousands. The calls go straight to the gRPC stubs with protobuf messages, as
the broker's hot path does; the generated GAPIC client's proto-plus wrapping
costs about a third of the rate (see docs/connectors/pubsub.md).

It runs in a scratch project whose topic and subscription are deleted
afterwards, and prints nothing; ``python -m benchmarks.brokers.pubsub_raw
HOST:PORT [N]`` prints the rate.
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
    def __init__(self, channel: grpc.Channel) -> None:
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


async def _call(method: Any, request: Any, timeout: float = 30.0) -> Any:
    """One RPC on gRPC's own future, awaited without a thread."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()
    call = method.future(request, timeout=timeout)

    def copy(_: Any) -> None:
        def settle() -> None:
            if done.done():
                return
            exc = call.exception()
            done.set_exception(exc) if exc is not None else done.set_result(call.result())

        loop.call_soon_threadsafe(settle)

    call.add_done_callback(copy)
    return await done


async def raw_rate(n: int, emulator: str) -> float:
    """Events per second through the emulator at ``emulator`` (HOST:PORT); prints nothing."""
    channel = grpc.insecure_channel(emulator, options=[("grpc.max_receive_message_length", -1)])
    stubs = _Stubs(channel)
    project = f"scorebus-bench-{uuid.uuid4().hex[:12]}"
    topic = f"projects/{project}/topics/raw"
    sub = f"projects/{project}/subscriptions/raw"
    messages = [_message(i) for i in range(n)]
    try:
        await _call(stubs.create_topic, T.Topic.pb()(name=topic))
        await _call(
            stubs.create_sub, T.Subscription.pb()(name=sub, topic=topic, ack_deadline_seconds=60)
        )

        async def publish() -> None:
            slots = asyncio.Semaphore(4)

            async def one(chunk: list[Any]) -> None:
                async with slots:
                    await _call(stubs.publish, T.PublishRequest.pb()(topic=topic, messages=chunk))

            await asyncio.gather(*(one(messages[i : i + _BATCH]) for i in range(0, n, _BATCH)))

        async def consume() -> None:
            received, acks = 0, []
            while received < n:
                reply = await _call(
                    stubs.pull, T.PullRequest.pb()(subscription=sub, max_messages=_BATCH), 10.0
                )
                ids = [m.ack_id for m in reply.received_messages]
                received += len(ids)
                if ids:
                    request = T.AcknowledgeRequest.pb()(subscription=sub, ack_ids=ids)
                    acks.append(asyncio.ensure_future(_call(stubs.ack, request)))
            await asyncio.gather(*acks)

        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(publish(), consume()), timeout=max(60.0, n / 2000))
        elapsed = time.perf_counter() - started
    finally:
        for method, request in (
            (stubs.delete_sub, T.DeleteSubscriptionRequest.pb()(subscription=sub)),
            (stubs.delete_topic, T.DeleteTopicRequest.pb()(topic=topic)),
        ):
            with contextlib.suppress(grpc.RpcError):  # never created, or the emulator is gone
                await _call(method, request, 10.0)
        channel.close()
    return n / elapsed


if __name__ == "__main__":
    host = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    print(f"{asyncio.run(raw_rate(count, host)):,.0f} msg/s")
