"""What a committed batch becomes: result rows, result events and their outbox entries.

Pure functions of a scored batch, so the scoring loop only decides when to
commit and what to settle.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from ..brokers.base import Delivery, Subscription
from ..errors import TransientError
from ..events import Event
from ..sinks.base import OutboxEvent, ScoreResult
from .rollout import encode

log = logging.getLogger(__name__)

Item = tuple[Delivery, Any, float]  # delivery, validated data, wall time received


def score_results(
    scorer: str, items: list[Item], outputs: list[bytes], model: tuple[str, str], now: float
) -> list[ScoreResult]:
    """One row per event, keyed by (scorer, event id), recording the model that scored it."""
    name, version = model
    return [
        ScoreResult(
            scorer=scorer,
            event_id=d.event.id,
            model=name,
            model_version=version,
            output=out,
            event_time=d.event.time or t,
            scored_at=now,
            # An event without a time (no ce-time) is timed from its receipt.
            latency_ms=(now - (d.event.time or t)) * 1000,
            service_ms=(now - t) * 1000,
        )
        for (d, _, t), out in zip(items, outputs, strict=True)
    ]


def result_events(
    scorer: str, result_type: str, items: list[Item], outputs: list[bytes], model: tuple[str, str]
) -> list[Event]:
    """One event per result, caused by the scored event, with a deterministic id.

    Re-scoring a redelivered event yields the same id, which the broker's
    publish dedupe (or the consumer's sink) drops.
    """
    name, version = model
    head = f'{{"model":"{name}","model_version":"{version}","result":'.encode()
    events = []
    for (d, _, _), out in zip(items, outputs, strict=True):
        eid = uuid.uuid5(uuid.NAMESPACE_URL, f"{scorer}/{d.event.id}").hex
        body = head + out + b',"event_id":' + encode(d.event.id) + b"}"
        events.append(Event.new(result_type, body, id=eid, caused_by=d.event))
    return events


def outbox_entries(scorer: str, topic: str, events: list[Event]) -> list[OutboxEvent]:
    """The outbox rows that publish ``events`` once their results are committed."""
    return [
        OutboxEvent(topic=topic, key=e.extensions["causationid"], scorer=scorer, event=e)
        for e in events
    ]


async def keep_leases(
    sub: Subscription, deliveries: list[Delivery], lease_s: float, scorer: str
) -> None:
    """Extend a batch's leases while it is scored and committed (run as a task, then cancel).

    A slow model or sink must not let the leases run out: the broker would
    hand the events to another worker and they would be scored twice (the
    sink keeps one result, but the work is wasted). Like the Pub/Sub
    client's leaser, extend a third of the deadline before it ends.
    """
    margin = min(lease_s / 3, 10.0)
    while True:
        remaining = min(d.remaining_s() for d in deliveries)
        if remaining == float("inf"):
            return
        await asyncio.sleep(max(0.0, remaining - margin))
        try:
            await sub.extend(deliveries, lease_s)
        except TransientError as exc:
            log.warning("scorer=%s could not extend leases: %s", scorer, exc)
            return
        deadline = time.time() + lease_s
        for d in deliveries:
            d.deadline = deadline
