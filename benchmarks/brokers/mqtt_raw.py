"""The raw rate of Mosquitto for scorebus's traffic: QoS 1 publish + receive, no scorebus.

One publisher keeps up to 1000 QoS 1 publishes in flight (paho under aiomqtt,
as scorebus does), one subscriber receives them at QoS 1 (PUBACK on receipt),
both in this process and reading every waiting packet per wake-up as scorebus
does; the rate runs from the first publish to the last message received. This
is the ceiling the ``mqtt://`` broker works under on this machine.
"""

from __future__ import annotations

import asyncio
import select
import time
import uuid
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

HOST, PORT = "127.0.0.1", 1883
WINDOW = 1000
MEASURES = "QoS 1 publish + receive, concurrent"
PAYLOAD = b'{"amount": 125.5, "card_id": 48213, "merchant": 912, "hour": 14, "country": 3}'


def _read_bursts(client: aiomqtt.Client) -> None:
    p = client._client
    sock = p.socket()
    assert sock is not None
    fd = sock.fileno()

    def reader() -> None:
        for _ in range(256):
            p.loop_read()
            if p.socket() is None or not select.select([fd], [], [], 0)[0]:
                break

    loop = asyncio.get_running_loop()
    loop.remove_reader(fd)
    loop.add_reader(fd, reader)


async def raw_rate(n: int) -> float:
    """Messages per second through Mosquitto for ``n`` QoS 1 messages (publish to receipt)."""
    loop = asyncio.get_running_loop()
    topic = f"sbbench/{uuid.uuid4().hex}"
    all_in: asyncio.Future[None] = loop.create_future()
    received = 0

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        nonlocal received
        received += 1
        if received == n and not all_in.done():
            all_in.set_result(None)

    v5 = aiomqtt.ProtocolVersion.V5
    # Without a Receive Maximum Mosquitto allows max_inflight_messages (20) in flight and
    # queues 1000 more, dropping the rest; scorebus's members ask for 65535 too.
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.ReceiveMaximum = 65535
    async with (
        aiomqtt.Client(HOST, PORT, protocol=v5, properties=props) as sub,
        aiomqtt.Client(HOST, PORT, protocol=v5, max_inflight_messages=0) as pub,
    ):
        _read_bursts(sub)
        _read_bursts(pub)
        sub._client.on_message = on_message
        await sub.subscribe(topic, qos=1)
        acked: dict[int, asyncio.Future[None]] = {}

        def on_publish(client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
            fut = acked.pop(mid, None)
            if fut is not None and not fut.done():
                fut.set_result(None)

        pub._client.on_publish = on_publish
        started = time.perf_counter()
        for start in range(0, n, WINDOW):
            futs = []
            for _ in range(min(WINDOW, n - start)):
                info = pub._client.publish(topic, PAYLOAD, 1)
                fut: asyncio.Future[None] = loop.create_future()
                acked[info.mid] = fut
                futs.append(fut)
            await asyncio.gather(*futs)
        await asyncio.wait_for(all_in, 60)
        return n / (time.perf_counter() - started)
