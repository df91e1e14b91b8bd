"""The sink contract: an idempotent write of a batch of results.

``write`` is keyed by ``(scorer, event_id)``: writing the same result twice
leaves one row, so a redelivered event never makes a second result. The runtime
acks only after ``write`` returns. A sink that is overloaded raises
``SinkUnavailable(retry_after_s=...)``.

Where a scorer both stores and publishes, ``write`` receives the outgoing
events as ``outbox`` and commits them in the same transaction as the results;
a relay publishes them afterwards (see ``scorebus.runtime.relay``).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable

import msgspec

from ..events import Event


class ScoreResult(msgspec.Struct, kw_only=True):
    """One scored event.

    Attributes:
        output: the user's result, JSON-encoded.
        latency_ms: from the event's ``time`` to the commit (end to end).
        service_ms: from the worker receiving the event to the commit.
    """

    scorer: str
    event_id: str
    model: str
    model_version: str
    output: bytes
    event_time: float
    scored_at: float
    latency_ms: float
    service_ms: float


class OutboxEvent(msgspec.Struct, kw_only=True):
    """An event to publish once its result is committed; ``key`` is the result's event id."""

    topic: str
    key: str
    scorer: str
    event: Event


class StoredResult(msgspec.Struct, kw_only=True):
    scorer: str
    event_id: str
    model: str
    model_version: str
    output: dict[str, object] | list[object] | float | int | str | bool | None
    scored_at: float
    latency_ms: float
    service_ms: float


@runtime_checkable
class Sink(Protocol):
    url: str

    async def open(self) -> None: ...

    async def write(
        self, results: Sequence[ScoreResult], outbox: Sequence[OutboxEvent] = ()
    ) -> int:
        """Commit results (and their outbox events) idempotently; returns rows newly written."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class ResultStore(Sink, Protocol):
    """A sink that can also be read back (status, results, the outbox relay)."""

    async def results(
        self, *, scorer: str | None = None, limit: int = 20
    ) -> list[StoredResult]: ...

    async def counts(self) -> dict[str, int]:
        """Result rows per scorer."""
        ...

    async def outbox_pending(self, limit: int = 500) -> list[tuple[int, OutboxEvent]]: ...

    async def outbox_done(self, ids: Sequence[int]) -> None: ...

    def outbox_batch(
        self, limit: int = 500
    ) -> AbstractAsyncContextManager[list[tuple[int, OutboxEvent]]]:
        """Claim up to ``limit`` outbox events for this caller alone (the relay).

        Another relay (another worker process) skips them while claimed. A clean
        exit from the block deletes them; an error releases them for a retry.
        """
        ...
