"""What a worker did, as one report: totals and a line per scorer and handler.

Apart from the worker so the report's shape (which ``scorebus run`` prints and
``WorkerPool`` reads back from each child process as JSON) is defined in one
small place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .handlers import HandlerLoop
from .relay import OutboxRelay
from .scoring import ScoringLoop


@dataclass
class WorkerReport:
    scored: int = 0
    dead_lettered: int = 0
    retried: int = 0
    handled: int = 0
    relayed: int = 0
    seconds: float = 0.0
    per_loop: dict[str, dict[str, int]] = field(default_factory=dict)


def worker_report(
    scoring: Sequence[ScoringLoop],
    handling: Sequence[HandlerLoop],
    relays: Sequence[OutboxRelay],
    seconds: float,
) -> WorkerReport:
    """Sum the loops' metrics; each loop also gets its own line under ``per_loop``."""
    report = WorkerReport(seconds=seconds)
    for lp in scoring:
        m = lp.metrics
        report.scored += m.scored
        report.dead_lettered += m.dead_lettered
        report.retried += m.retried
        report.per_loop[lp.spec.name] = {
            "scored": m.scored,
            "dead_lettered": m.dead_lettered,
            "retried": m.retried,
        }
    for hl in handling:
        report.handled += hl.metrics.handled
        report.dead_lettered += hl.metrics.dead_lettered
        report.retried += hl.metrics.retried
        report.per_loop[hl.spec.name] = {
            "handled": hl.metrics.handled,
            "dead_lettered": hl.metrics.dead_lettered,
            "retried": hl.metrics.retried,
        }
    report.relayed = sum(r.relayed for r in relays)
    return report
