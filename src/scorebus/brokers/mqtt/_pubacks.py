"""QoS 1 publishes in flight on one connection, each waiting for its PUBACK.

aiomqtt awaits one publish at a time per call; scorebus publishes batches, so
it hands a window of messages to paho at once and keeps one future per packet
id, resolved by paho's ``on_publish`` (an MQTT 5 failure reason code, such as
"not authorized" or "quota exceeded", fails it). A lost connection fails them
all: nothing says which ones Mosquitto took, so the caller publishes the batch
again (at least once; event ids make the copies harmless).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.reasoncodes import ReasonCode

from ...errors import BrokerUnavailable
from ._wire import Outgoing

WINDOW = 1000  # publishes in flight at once


class LinkLost(BrokerUnavailable):
    """The connection dropped before Mosquitto acknowledged; retry on the next one."""


class PubAcks:
    """The publishes of one link that wait for a PUBACK (see the module docstring)."""

    def __init__(self, where: str, timeout_s: float) -> None:
        self.where = where
        self.timeout_s = timeout_s
        self._pending: dict[int, asyncio.Future[None]] = {}

    def on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        fut = self._pending.pop(mid, None)
        if fut is None or fut.done():
            return
        if isinstance(rc, ReasonCode) and rc.is_failure:
            fut.set_exception(
                BrokerUnavailable(f"the MQTT broker at {self.where} refused a message: {rc}")
            )
        else:
            fut.set_result(None)

    def fail_all(self) -> None:
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(LinkLost(f"the connection to {self.where} was lost"))

    async def publish(self, client: paho.Client | None, messages: Sequence[Outgoing]) -> None:
        """Publish at QoS 1 and wait for every PUBACK.

        Raises:
            LinkLost: not connected, or the connection dropped first (retry them all).
            BrokerUnavailable: Mosquitto refused a message.
        """
        loop = asyncio.get_running_loop()
        for start in range(0, len(messages), WINDOW):
            futs: dict[int, asyncio.Future[None]] = {}
            for m in messages[start : start + WINDOW]:
                if client is None:
                    raise LinkLost(f"not connected to {self.where}")
                info = client.publish(m.topic, m.payload, 1, m.retain, m.properties)
                if info.rc != paho.MQTT_ERR_SUCCESS:
                    raise LinkLost(f"publish to {self.where} failed: {paho.error_string(info.rc)}")
                futs[info.mid] = self._pending[info.mid] = loop.create_future()
            try:
                done = await asyncio.wait_for(
                    asyncio.gather(*futs.values(), return_exceptions=True), self.timeout_s
                )
            except TimeoutError:
                for mid in futs:
                    self._pending.pop(mid, None)
                raise LinkLost(
                    f"the MQTT broker at {self.where} did not acknowledge within {self.timeout_s:g} s"
                ) from None
            failed = next((r for r in done if isinstance(r, BaseException)), None)
            if failed is not None:
                raise failed
