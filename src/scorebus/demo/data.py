"""Synthetic demo traffic: valid transactions and malformed ones of four kinds."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import msgspec

from ..events import Event
from ..models.demo import synthetic_transactions
from . import MAX_EVENT_BYTES, TOPIC

BAD_KINDS = ("not_json", "missing_field", "wrong_type", "oversized")
# What the dead-letter store must say for each kind of bad event.
EXPECTED_REASON = {
    "not_json": "undecodable",
    "missing_field": "schema",
    "wrong_type": "schema",
    "oversized": "too_large",
}


@dataclass
class Plan:
    """What a demo run publishes, and what it must end with."""

    run_id: str
    total: int
    bad: dict[str, str] = field(default_factory=dict)  # event id -> bad kind

    @property
    def valid(self) -> int:
        return self.total - len(self.bad)


def chunks(
    plan: Plan, bad_fraction: float, *, seed: int, size: int = 2000
) -> Iterator[list[Event]]:
    """Events in publishable chunks; ``Event.time`` is set when a chunk is made."""
    rng = random.Random(seed)
    encode = msgspec.json.encode
    for start in range(0, plan.total, size):
        n = min(size, plan.total - start)
        rows = synthetic_transactions(n, seed=seed + start)
        events = []
        for i, row in enumerate(rows):
            event_id = f"{plan.run_id}-{start + i:07d}"
            data: bytes = encode(row)
            if rng.random() < bad_fraction:
                kind = BAD_KINDS[(start + i) % len(BAD_KINDS)]
                data = _spoil(row, kind)
                plan.bad[event_id] = kind
            events.append(Event.new("demo.transaction", data, id=event_id, source="scorebus/demo"))
        yield events


def _spoil(row: dict[str, object], kind: str) -> bytes:
    if kind == "not_json":
        return b'{"amount": 12.5, "card_id": '
    if kind == "missing_field":
        return msgspec.json.encode({k: v for k, v in row.items() if k != "amount"})
    if kind == "wrong_type":
        return msgspec.json.encode({**row, "amount": f"{row['amount']} EUR"})
    return msgspec.json.encode({**row, "note": "x" * (MAX_EVENT_BYTES + 1024)})


__all__ = ["BAD_KINDS", "EXPECTED_REASON", "TOPIC", "Plan", "chunks"]
