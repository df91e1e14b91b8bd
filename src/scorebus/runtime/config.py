"""Frozen, keyword-only config groups for a pipeline.

Precedence everywhere in scorebus: an argument in code > a CLI flag > a
``SCOREBUS_*`` environment variable > the default here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..errors import ConfigError


def _check(cond: bool, group: str, key: str, value: object, valid: str) -> None:
    if not cond:
        raise ConfigError(f"{group}({key}={value!r}): {key} must be {valid}")


@dataclass(frozen=True, kw_only=True, slots=True)
class Batch:
    """Micro-batching: a batch closes at ``max_size`` events or ``max_wait_ms`` after
    its first event, whichever comes first, and never later than the earliest lease
    deadline in it allows.

    With ``adaptive`` (the default) it may close sooner: the size is chosen from
    the measured arrival rate and per-batch cost, so a trickle is scored at once
    and a flood in large batches (``runtime/batching.py``). ``adaptive=False``
    always waits for ``max_size`` or ``max_wait_ms``.
    """

    max_size: int = 512
    max_wait_ms: float = 5.0
    adaptive: bool = True

    def __post_init__(self) -> None:
        _check(1 <= self.max_size <= 100_000, "Batch", "max_size", self.max_size, "in 1..100000")
        _check(
            0 <= self.max_wait_ms <= 60_000, "Batch", "max_wait_ms", self.max_wait_ms, "in 0..60000"
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class FlowControl:
    """A cap on what is in flight (pulled but not yet settled) per scorer.

    Pulling pauses when either figure reaches 1.0 of its cap and resumes below 0.8,
    so a burst slows the consumer instead of growing memory.
    """

    max_messages: int = 8_192
    max_bytes: int = 64 << 20

    def __post_init__(self) -> None:
        _check(self.max_messages >= 1, "FlowControl", "max_messages", self.max_messages, ">= 1")
        _check(self.max_bytes >= 1024, "FlowControl", "max_bytes", self.max_bytes, ">= 1024")


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """Transient failures: redeliver after exponential backoff with jitter, then
    dead-letter once ``max_attempts`` deliveries have failed."""

    max_attempts: int = 5
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 60.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        _check(
            1 <= self.max_attempts <= 100,
            "RetryPolicy",
            "max_attempts",
            self.max_attempts,
            "in 1..100",
        )
        _check(
            self.initial_backoff_s >= 0,
            "RetryPolicy",
            "initial_backoff_s",
            self.initial_backoff_s,
            ">= 0",
        )
        _check(
            self.max_backoff_s >= self.initial_backoff_s,
            "RetryPolicy",
            "max_backoff_s",
            self.max_backoff_s,
            ">= initial_backoff_s",
        )
        _check(self.multiplier >= 1, "RetryPolicy", "multiplier", self.multiplier, ">= 1")
        _check(0 <= self.jitter <= 1, "RetryPolicy", "jitter", self.jitter, "in [0, 1]")

    def backoff_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before the redelivery that follows failed delivery ``attempt`` (1-based)."""
        base = min(
            self.max_backoff_s, self.initial_backoff_s * self.multiplier ** max(0, attempt - 1)
        )
        spread = base * self.jitter
        return max(0.0, base + (rng or random).uniform(-spread, spread))

    def exhausted(self, attempt: int) -> bool:
        return attempt >= self.max_attempts
