"""Settling deliveries that did not succeed: retry with backoff or dead-letter.

Retries go through the broker (nack with a delay), not an in-process sleep, so
the attempt count survives a crash and a redelivery may land on another worker.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence

from ..brokers.base import Delivery, Subscription
from ..errors import reason_of
from .config import RetryPolicy
from .metrics import LoopMetrics

log = logging.getLogger(__name__)


class Settler:
    def __init__(
        self, sub: Subscription, retry: RetryPolicy, metrics: LoopMetrics, *, scorer: str
    ) -> None:
        self.sub = sub
        self.retry_policy = retry
        self.metrics = metrics
        self.scorer = scorer

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        await self.sub.ack(deliveries)

    async def dead_letter(self, items: Sequence[tuple[Delivery, str, str]]) -> None:
        for d, reason, error in items[:5]:
            log.info(
                "scorer=%s event=%s attempt=%d dead-lettered: %s: %s",
                self.scorer,
                d.event.id,
                d.attempt,
                reason,
                error,
            )
        await self.sub.dead_letter(items)
        self.metrics.dead_lettered += len(items)

    async def retry(self, deliveries: Sequence[Delivery], exc: BaseException) -> None:
        """Nack with backoff by attempt; dead-letter those whose attempts are spent."""
        reason = reason_of(exc)
        spent = [
            (d, "max_attempts", f"{reason}: {exc}")
            for d in deliveries
            if self.retry_policy.exhausted(d.attempt)
        ]
        if spent:
            await self.dead_letter(spent)
        by_attempt: dict[int, list[Delivery]] = defaultdict(list)
        for d in deliveries:
            if not self.retry_policy.exhausted(d.attempt):
                by_attempt[d.attempt].append(d)
        # Backpressure from a sink or model (retry_after_s) sets a floor on the delay.
        floor = getattr(exc, "retry_after_s", None) or 0.0
        for attempt, group in by_attempt.items():
            await self.sub.nack(group, max(floor, self.retry_policy.backoff_s(attempt)))
            self.metrics.retried += len(group)
