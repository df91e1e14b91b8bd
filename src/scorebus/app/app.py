"""``App``: the user's pipeline definition.

    app = App("fraud")

    @app.scorer(subscribe="transactions", schema=Transaction, model="fraud@champion",
                batch=Batch(max_size=512, max_wait_ms=5))
    def score(events: list[Transaction], scores: np.ndarray) -> list[dict]:
        return [{"fraud": float(s), "flag": bool(s > 0.9)} for s in scores]

    @app.on("model.trained")
    def promote(event: Event, ctx: HandlerContext) -> None:
        ctx.publish("model.promoted", {"version": event.data["version"]})

Registrations are instance state; decorators return the function unchanged, so
it can still be called and tested directly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ..errors import ConfigError
from ..events import Schema
from ..events.schema import DEFAULT_MAX_BYTES
from ..runtime.config import Batch, FlowControl, RetryPolicy
from ..runtime.spec import Canary, Features, HandlerSpec, ModelSource, ScorerSpec

F = TypeVar("F", bound=Callable[..., Any])
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,254}$")


def _check_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigError(
            f"{kind} {value!r}: use 3-255 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


def _emitted_types(emits: Any) -> frozenset[str]:
    """``emits=`` (one type or several) as a set; a bare string is one type, not its letters."""
    types = [emits] if isinstance(emits, str) else emits
    try:
        found = frozenset(types)
    except TypeError:
        found = None
    if found is None or not all(isinstance(t, str) and t for t in found):
        raise ConfigError(
            f"app.on(emits={emits!r}): expected event type names, e.g. emits=['model.trained']"
        )
    return found


def _check_challenger(shadow: ModelSource, canary: Any, sink: str | bool | None) -> None:
    if canary is not None and not isinstance(canary, Canary):
        raise ConfigError(f"scorer canary=: expected Canary(model=..., share=...), got {canary!r}")
    if shadow is not None and canary is not None:
        raise ConfigError(
            "scorer shadow= and canary= are exclusive: a challenger either scores a copy "
            "of the traffic (shadow) or a share of it (canary)"
        )
    if shadow is not None and sink is False:
        raise ConfigError(
            "scorer shadow= needs a results store (sink=False given): shadow results are "
            "stored, never published"
        )


class App:
    """A named set of scorers and workflow handlers.

    Args:
        name: prefixes subscription names (``NAME.SCORER``).
        events_topic: the default topic of workflow events (``@app.on``, ``ctx.publish``).
        max_hops: a workflow chain longer than this is dead-lettered.
    """

    def __init__(self, name: str, *, events_topic: str = "events", max_hops: int = 16) -> None:
        self.name = _check_name("app name", name)
        self.events_topic = _check_name("topic", events_topic)
        self.max_hops = max_hops
        self._scorers: dict[str, ScorerSpec] = {}
        self._handlers: dict[str, HandlerSpec] = {}
        self._startup: list[Callable[[], Any]] = []

    def scorer(
        self,
        *,
        subscribe: str,
        schema: type[Any] | None = None,
        model: ModelSource = None,
        batch: Batch | None = None,
        flow: FlowControl | None = None,
        retry: RetryPolicy | None = None,
        sink: str | bool | None = None,
        publish: str | None = None,
        features: Features | None = None,
        name: str | None = None,
        max_event_bytes: int = DEFAULT_MAX_BYTES,
        ack_deadline_s: float = 60.0,
        shadow: ModelSource = None,
        canary: Canary | None = None,
    ) -> Callable[[F], F]:
        """Register a scorer: ``fn(events, predictions) -> results`` (one per event).

        Args:
            subscribe: the topic to consume.
            schema: the event data's type (msgspec Struct, pydantic model, ...).
            model: ``NAME[@VERSION|@ALIAS]`` in the registry, a ``Model``, or a factory.
            batch: micro-batching policy.
            flow: in-flight caps.
            retry: backoff and maximum attempts for transient failures.
            sink: results store URL; the worker's store when omitted; ``False`` to only publish.
            publish: topic to publish each result to (through the outbox when also stored).
            features: ``events -> 2-D array``; by default columns are taken by the model's
                input names from each event.
            name: the scorer's name; the function's name by default.
            max_event_bytes: larger payloads are dead-lettered as too large.
            ack_deadline_s: lease length; a batch closes early before it runs out.
            shadow: a challenger (``NAME@ALIAS``, a ``Model``...) that scores a copy of
                every batch; its results are stored as ``NAME.shadow``.
            canary: ``Canary(model=..., share=0.1)``: a challenger that scores that share
                of the events instead of ``model``. Exclusive with ``shadow``.

        Models given as ``NAME`` or ``NAME@ALIAS`` are followed: when the alias moves,
        the worker smoke-tests the new version and swaps it in between batches.

        Raises:
            ConfigError: a bad name, a duplicate scorer, or a bad config value.
        """
        for key, value, kind in (
            ("batch", batch, Batch),
            ("flow", flow, FlowControl),
            ("retry", retry, RetryPolicy),
        ):
            if value is not None and not isinstance(value, kind):
                raise ConfigError(f"scorer {key}=: expected {kind.__name__}(...), got {value!r}")
        _check_name("topic", subscribe)
        if sink is False and publish is None:
            raise ConfigError(
                "scorer sink=False needs publish=TOPIC: its results must go somewhere"
            )
        if sink is True:
            sink = None
        if publish is not None:
            _check_name("topic", publish)
        _check_challenger(shadow, canary, sink)

        def register(fn: F) -> F:
            scorer_name = _check_name("scorer name", name or fn.__name__)
            if scorer_name in self._scorers or scorer_name in self._handlers:
                raise ConfigError(
                    f"app {self.name!r} already has a scorer or handler {scorer_name!r}"
                )
            self._scorers[scorer_name] = ScorerSpec(
                name=scorer_name,
                topic=subscribe,
                subscription=f"{self.name}.{scorer_name}",
                schema=Schema(schema, max_bytes=max_event_bytes),
                fn=fn,
                model=model,
                features=features,
                batch=batch or Batch(),
                flow=flow or FlowControl(),
                retry=retry or RetryPolicy(),
                sink=sink,
                publish=publish,
                result_type=f"{self.name}.{scorer_name}.scored",
                ack_deadline_s=ack_deadline_s,
                shadow=shadow,
                canary=canary,
                events_topic=self.events_topic,
            )
            return fn

        return register

    def on(
        self,
        *types: str,
        topic: str | None = None,
        schema: type[Any] | None = None,
        retry: RetryPolicy | None = None,
        name: str | None = None,
        ack_deadline_s: float = 300.0,
        emits: Iterable[str] | None = None,
    ) -> Callable[[F], F]:
        """Register a workflow handler ``fn(event, ctx)`` for events of ``types``.

        The handler may call ``ctx.publish(type, data)`` to start the next step.

        Args:
            types: the event types it handles; others on the topic are acked unseen.
            topic: the topic to consume; the app's ``events_topic`` by default.
            schema: the event data's type; bad data is dead-lettered.
            retry: backoff and maximum attempts when ``fn`` raises.
            name: the handler's name; the function's name by default.
            ack_deadline_s: lease length while ``fn`` runs.
            emits: the event types ``fn`` publishes, for ``scorebus workflows``; by
                default the function's ``emits`` attribute, if it has one.

        Raises:
            ConfigError: no types, a bad name or topic, a duplicate, or bad ``emits``.
        """
        if not types:
            raise ConfigError(
                "app.on(...) needs at least one event type, e.g. app.on('data.arrived')"
            )

        def register(fn: F) -> F:
            handler_name = _check_name("handler name", name or fn.__name__)
            if handler_name in self._handlers or handler_name in self._scorers:
                raise ConfigError(
                    f"app {self.name!r} already has a scorer or handler {handler_name!r}"
                )
            self._handlers[handler_name] = HandlerSpec(
                name=handler_name,
                types=frozenset(types),
                topic=_check_name("topic", topic or self.events_topic),
                subscription=f"{self.name}.{handler_name}",
                fn=fn,
                schema=Schema(schema),
                retry=retry or RetryPolicy(),
                max_hops=self.max_hops,
                ack_deadline_s=ack_deadline_s,
                is_async=HandlerSpec.detect_async(fn),
                emits=_emitted_types(emits if emits is not None else getattr(fn, "emits", ())),
            )
            return fn

        return register

    def on_startup(self, fn: F) -> F:
        """Run ``fn()`` once in each worker before it starts consuming."""
        self._startup.append(fn)
        return fn

    @property
    def scorers(self) -> list[ScorerSpec]:
        return list(self._scorers.values())

    @property
    def handlers(self) -> list[HandlerSpec]:
        return list(self._handlers.values())

    @property
    def startup(self) -> list[Callable[[], Any]]:
        return list(self._startup)

    def subscriptions(self) -> list[tuple[str, str]]:
        """``(topic, subscription)`` of every scorer and handler."""
        return [(s.topic, s.subscription) for s in self.scorers] + [
            (h.topic, h.subscription) for h in self.handlers
        ]

    def __repr__(self) -> str:
        return f"App({self.name!r}, scorers={list(self._scorers)}, handlers={list(self._handlers)})"
