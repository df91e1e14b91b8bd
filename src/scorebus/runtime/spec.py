"""What the runtime runs: plain specs built by the app layer.

The runtime never imports ``scorebus.app``; ``App`` turns its decorators into
these specs, and anything else (a test, a Cloud Function) can build them too.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..events import Event, Schema
from ..models.base import Model
from .config import Batch, FlowControl, RetryPolicy

ModelSource = str | Model | Callable[[], Model] | None
PostProcess = Callable[[list[Any], Any], Sequence[Any]]
Features = Callable[[list[Any]], np.ndarray]


@dataclass(frozen=True, kw_only=True)
class Canary:
    """A challenger that scores a share of the traffic instead of the champion.

    The share is chosen by a hash of the event id, so a redelivered event takes
    the same path. Its results record the challenger's version.

    Args:
        model: ``NAME@ALIAS`` (followed like the main model), ``NAME@VERSION``,
            a ``Model`` or a factory.
        share: the fraction of events it scores, strictly between 0 and 1.

    Raises:
        ConfigError: no model, or a share outside (0, 1).
    """

    model: ModelSource
    share: float = 0.1

    def __post_init__(self) -> None:
        if self.model is None:
            raise ConfigError("Canary(model=None): model must be NAME@ALIAS, a Model or a factory")
        if isinstance(self.share, bool) or not isinstance(self.share, int | float):
            raise ConfigError(f"Canary(share={self.share!r}): share must be a number in (0, 1)")
        if not 0 < self.share < 1:
            raise ConfigError(
                f"Canary(share={self.share!r}): share must be in (0, 1), e.g. 0.1 for 10 %"
            )


@dataclass(frozen=True, kw_only=True)
class ScorerSpec:
    """One scorer: subscription -> schema -> batch -> model -> ``fn`` -> sink/publish.

    ``fn(events, predictions)`` receives the validated data of a batch and the
    model's output for it (``None`` without a model) and returns one result per
    event, in order. Results must be JSON-encodable (dicts, numbers, Structs).

    ``shadow`` scores a copy of every batch (stored as ``NAME.shadow``);
    ``canary`` scores a share of the events instead of ``model``; at most one of
    the two. ``events_topic`` receives ``model.swapped`` / ``model.refused``.
    """

    name: str
    topic: str
    subscription: str
    schema: Schema[Any]
    fn: PostProcess | None = None
    model: ModelSource = None
    features: Features | None = None
    batch: Batch = field(default_factory=Batch)
    flow: FlowControl = field(default_factory=FlowControl)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sink: str | bool | None = None  # None: the worker's store; False: publish only
    publish: str | None = None
    result_type: str = ""
    ack_deadline_s: float = 60.0
    shadow: ModelSource = None
    canary: Canary | None = None
    events_topic: str | None = None

    @property
    def challenger(self) -> ModelSource:
        """The shadow's or the canary's model, if any."""
        return self.canary.model if self.canary is not None else self.shadow


@dataclass(frozen=True, kw_only=True)
class HandlerSpec:
    """A workflow handler: events of ``types`` on ``topic`` -> ``fn(event, ctx)``.

    ``emits`` declares the event types ``fn`` may publish; it is documentation
    for the routing graph (``scorebus workflows``), not enforced at run time.
    """

    name: str
    types: frozenset[str]
    topic: str
    subscription: str
    fn: Callable[..., Any]
    schema: Schema[Any]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_hops: int = 16
    ack_deadline_s: float = 300.0
    is_async: bool = False
    emits: frozenset[str] = frozenset()

    @staticmethod
    def detect_async(fn: Callable[..., Any]) -> bool:
        return inspect.iscoroutinefunction(fn)


@dataclass
class HandlerContext:
    """What a workflow handler gets besides the event: a way to publish the next one."""

    event: Event
    default_topic: str
    outgoing: list[tuple[str, Event]] = field(default_factory=list)
    _publish_async: Callable[[str, Sequence[Event]], Awaitable[None]] | None = None

    def publish(
        self,
        type: str,
        data: Any = None,
        *,
        topic: str | None = None,
        subject: str | None = None,
    ) -> Event:
        """Queue an event caused by the current one; published after the handler returns.

        Its id is derived from the cause, the type and its position, so a
        redelivered cause republishes the same ids and the broker drops the copies.
        """
        from uuid import NAMESPACE_URL, uuid5

        index = len(self.outgoing)
        event_id = uuid5(NAMESPACE_URL, f"{self.event.id}/{type}/{index}").hex
        out = Event.new(type, data, id=event_id, subject=subject, caused_by=self.event)
        self.outgoing.append((topic or self.default_topic, out))
        return out


def feature_getter(names: Sequence[str], sample: Any) -> Features:
    """Build a fast row extractor for the model's input columns, by name."""
    names = tuple(names)
    get = operator.itemgetter(*names) if isinstance(sample, dict) else operator.attrgetter(*names)
    if len(names) == 1:

        def one(items: list[Any]) -> np.ndarray:
            return np.array([[get(x)] for x in items], dtype=np.float32)

        return one

    def many(items: list[Any]) -> np.ndarray:
        return np.array([get(x) for x in items], dtype=np.float32)

    return many
