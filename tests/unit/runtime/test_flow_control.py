"""FlowController: one load figure, pause at 1.0, resume below 0.8."""

from __future__ import annotations

import asyncio

from scorebus.runtime.config import FlowControl
from scorebus.runtime.flow import FlowController


async def _is_paused(flow: FlowController) -> bool:
    try:
        await asyncio.wait_for(flow.wait(), 0.02)
    except TimeoutError:
        return True
    return False


def test_pauses_at_full_message_load_and_resumes_below_point_eight() -> None:
    async def scenario() -> None:
        flow = FlowController(FlowControl(max_messages=10, max_bytes=1 << 20))

        flow.acquire(9, 90)
        assert flow.room() == 1
        assert not await _is_paused(flow)

        flow.acquire(1, 10)
        assert flow.load == 1.0
        assert flow.room() == 0
        assert await _is_paused(flow)

        flow.release(2, 20)  # load 0.8: still paused (hysteresis)
        assert flow.room() == 0
        assert await _is_paused(flow)

        flow.release(1, 10)  # load 0.7: resumed
        assert flow.room() == 3
        assert not await _is_paused(flow)

    asyncio.run(scenario())


def test_the_byte_cap_alone_pauses() -> None:
    async def scenario() -> None:
        flow = FlowController(FlowControl(max_messages=1000, max_bytes=2048))

        flow.acquire(1, 2048)
        assert flow.load == 1.0
        assert flow.room() == 0
        assert await _is_paused(flow)

        flow.release(0, 500)  # 1548 / 2048 = 0.756
        assert not await _is_paused(flow)
        assert flow.room() == 999

    asyncio.run(scenario())


def test_a_waiter_wakes_when_load_drops() -> None:
    async def scenario() -> None:
        flow = FlowController(FlowControl(max_messages=4, max_bytes=1 << 20))
        flow.acquire(4, 4)
        waiter = asyncio.create_task(flow.wait())
        await asyncio.sleep(0.01)
        assert not waiter.done()

        flow.release(3, 3)
        await asyncio.wait_for(waiter, 0.5)

        assert waiter.done()
        assert (flow.messages, flow.bytes) == (1, 1)

    asyncio.run(scenario())
