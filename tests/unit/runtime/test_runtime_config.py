"""Config groups: validation names the key and its valid values; backoff is bounded."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from scorebus.errors import ConfigError
from scorebus.runtime.config import Batch, FlowControl, RetryPolicy


@pytest.mark.parametrize(
    ("group", "kwargs", "expected"),
    [
        (Batch, {"max_size": 0}, r"Batch\(max_size=0\): max_size must be in 1\.\.100000"),
        (Batch, {"max_size": 100_001}, r"max_size must be in 1\.\.100000"),
        (Batch, {"max_wait_ms": -1}, r"Batch\(max_wait_ms=-1\): max_wait_ms must be in 0\.\.60000"),
        (FlowControl, {"max_messages": 0}, r"FlowControl\(max_messages=0\).*>= 1"),
        (FlowControl, {"max_bytes": 10}, r"FlowControl\(max_bytes=10\).*>= 1024"),
        (RetryPolicy, {"max_attempts": 0}, r"RetryPolicy\(max_attempts=0\).*in 1\.\.100"),
        (RetryPolicy, {"max_attempts": 101}, r"max_attempts must be in 1\.\.100"),
        (RetryPolicy, {"initial_backoff_s": -0.1}, r"initial_backoff_s must be >= 0"),
        (
            RetryPolicy,
            {"initial_backoff_s": 5, "max_backoff_s": 1},
            r"max_backoff_s=1\).*>= initial_backoff_s",
        ),
        (RetryPolicy, {"multiplier": 0.5}, r"multiplier must be >= 1"),
        (RetryPolicy, {"jitter": 1.5}, r"jitter must be in \[0, 1\]"),
    ],
)
def test_invalid_values_name_the_key_and_the_valid_range(
    group: type[Any], kwargs: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        group(**kwargs)


def test_config_groups_are_frozen_and_keyword_only() -> None:
    batch = Batch(max_size=10, max_wait_ms=1)

    with pytest.raises(dataclasses.FrozenInstanceError):
        batch.max_size = 20  # type: ignore[misc]
    with pytest.raises(TypeError):
        Batch(10)  # type: ignore[misc]
    assert (batch.max_size, batch.max_wait_ms) == (10, 1)


def test_backoff_grows_exponentially_without_jitter() -> None:
    policy = RetryPolicy(initial_backoff_s=0.5, multiplier=2, jitter=0, max_backoff_s=60)

    assert [policy.backoff_s(a) for a in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert policy.backoff_s(0) == 0.5


def test_backoff_is_capped_at_max_backoff() -> None:
    policy = RetryPolicy(initial_backoff_s=1, multiplier=3, jitter=0, max_backoff_s=10)

    assert [policy.backoff_s(a) for a in (1, 2, 3, 4, 50)] == [1, 3, 9, 10, 10]


def test_backoff_jitter_stays_within_bounds_and_varies() -> None:
    policy = RetryPolicy(initial_backoff_s=1, multiplier=2, jitter=0.2, max_backoff_s=5)
    rng = random.Random(7)

    for attempt, base in ((1, 1.0), (2, 2.0), (3, 4.0), (9, 5.0)):
        samples = [policy.backoff_s(attempt, rng) for _ in range(500)]
        assert min(samples) >= base * 0.8
        assert max(samples) <= base * 1.2
        assert max(samples) - min(samples) > base * 0.2


def test_exhausted_after_max_attempts_deliveries() -> None:
    policy = RetryPolicy(max_attempts=3)

    assert [policy.exhausted(a) for a in (1, 2, 3, 4)] == [False, False, True, True]
