"""The Pub/Sub broker's gRPC plumbing, where no server is needed: closing."""

from __future__ import annotations

import asyncio

import pytest

from scorebus.brokers.pubsub.options import parse_url
from scorebus.brokers.pubsub.rpc import Rpc
from scorebus.errors import BrokerUnavailable

URL = "pubsub://scorebus-test?emulator=127.0.0.1:9"  # never connected to


def test_close_in_a_running_loop_before_any_call_does_not_fail() -> None:
    async def scenario() -> None:
        rpc = Rpc(parse_url(URL))
        rpc.close()
        with pytest.raises(BrokerUnavailable, match="closed"):
            rpc.send("pull", None, timeout=1)

    asyncio.run(scenario())
