"""The workflow-handler loop: events of the handler's types -> ``fn(event, ctx)``.

A handler may publish further events through ``ctx.publish``; they carry the
causation id and hop count of the event that caused them, and they go out
before the cause is acked (at-least-once, with deterministic ids so a
redelivered cause republishes the same ids). A chain past ``max_hops`` is
dead-lettered with reason ``hop_limit`` instead of running forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from concurrent.futures import Executor

from ..brokers.base import Broker, Delivery
from ..errors import HopLimitError, PermanentError, TransientError
from ..events import Event
from .metrics import LoopMetrics
from .settle import Settler
from .spec import HandlerContext, HandlerSpec

log = logging.getLogger(__name__)


class HandlerLoop:
    def __init__(
        self, spec: HandlerSpec, broker: Broker, *, executor: Executor, stop: asyncio.Event
    ) -> None:
        self.spec = spec
        self.broker = broker
        self.executor = executor
        self.stop = stop
        self.metrics = LoopMetrics()
        self.in_flight = 0

    async def run(self) -> None:
        spec = self.spec
        sub = await self.broker.subscription(
            spec.topic, spec.subscription, ack_deadline_s=spec.ack_deadline_s
        )
        settle = Settler(sub, spec.retry, self.metrics, scorer=spec.name)
        down_for = 0.0
        while not self.stop.is_set():
            try:
                deliveries = await sub.pull(16, 0.1)
            except TransientError as exc:
                down_for = min(max(down_for * 2, 0.2), 5.0)
                log.warning(
                    "handler=%s broker unavailable, retrying in %.1f s: %s",
                    spec.name,
                    down_for,
                    exc,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), down_for)
                continue
            down_for = 0.0
            if not deliveries:
                continue
            self.metrics.touch()
            self.in_flight = len(deliveries)
            skip = [d for d in deliveries if d.event.type not in spec.types]
            if skip:
                await settle.ack(skip)
            for d in deliveries:
                if d.event.type in spec.types:
                    try:
                        await self._handle(d, settle)
                    except TransientError as exc:
                        # Settling failed (broker away): the lease runs out and the
                        # event is redelivered; handlers must be idempotent anyway.
                        log.warning(
                            "handler=%s event=%s not settled: %s", spec.name, d.event.id, exc
                        )
            self.in_flight = 0

    async def _handle(self, d: Delivery, settle: Settler) -> None:
        spec = self.spec
        try:
            if d.attempt > spec.retry.max_attempts:
                raise PermanentError(f"delivered {d.attempt} times without settling")
            if d.event.hops >= spec.max_hops:
                raise HopLimitError(
                    f"event chain reached {d.event.hops} hops (max_hops={spec.max_hops}); "
                    f"caused by {d.event.causation_id}: a loop in the workflow?"
                )
            event = d.event.with_data(spec.schema.decode(d.event.data))
            ctx = HandlerContext(event=event, default_topic=spec.topic)
            if spec.is_async:
                await spec.fn(event, ctx)
            else:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self.executor, spec.fn, event, ctx)
            await self._publish(ctx.outgoing)
        except PermanentError as exc:
            await settle.dead_letter([(d, exc.reason, str(exc))])
            return
        except Exception as exc:
            log.warning(
                "handler=%s event=%s type=%s attempt=%d failed: %s",
                spec.name,
                d.event.id,
                d.event.type,
                d.attempt,
                exc,
            )
            await settle.retry([d], exc)
            return
        await settle.ack([d])
        self.metrics.handled += 1

    async def _publish(self, outgoing: list[tuple[str, Event]]) -> None:
        by_topic: dict[str, list[Event]] = defaultdict(list)
        for topic, event in outgoing:
            by_topic[topic].append(event)
        for topic, events in by_topic.items():
            await self.broker.publish(topic, events)
