"""Which model scores which events: the main model, a shadow copy, a canary share.

A batch takes its models when it is dispatched (:meth:`ModelSet.split`) and
keeps them to the end, so a hot swap (``swap.py``) in the meantime applies to
the next batch, never to half of this one.

- Shadow: the challenger scores every batch too, right after the main model in
  the same executor hop; its results are stored as ``SCORER.shadow`` in the same
  sink write. Its failure is logged and counted and never touches the main results.
- Canary: a share of the events, chosen by a hash of the event id (a redelivery
  takes the same path), is scored by the challenger instead of the main model.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import msgspec
import numpy as np

from ..brokers.base import Broker, Delivery
from ..events import Event
from ..models.base import Model
from ..sinks.base import ScoreResult
from .spec import Features, ScorerSpec, feature_getter
from .swap import SAMPLE_SIZE, Follower, ModelSlot, followed_ref, smoke_test

log = logging.getLogger(__name__)

T = TypeVar("T")
_SPAN = float(1 << 64)


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise NotImplementedError(f"cannot encode {type(obj).__name__} in a result")


encode = msgspec.json.Encoder(enc_hook=_enc_hook).encode


class BatchModels(NamedTuple):
    """The models one batch was given at dispatch."""

    model: Model | None
    shadow: Model | None = None
    canary: bool = False  # ``model`` is the canary: on failure, the main model rescores


@dataclass
class Scored:
    """One executor hop's output: encoded results, and the shadow's if any."""

    outputs: list[bytes]
    compute_s: float
    shadow: list[bytes] | None = None
    shadow_s: float = 0.0
    shadow_error: Exception | None = None


def canary_pick(event_id: str, share: float) -> bool:
    """Whether the canary scores this event: stable across processes and redeliveries."""
    digest = hashlib.blake2b(event_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < share * _SPAN


def model_id(model: Model | None) -> tuple[str, str]:
    """``(name, version)`` to record; ``("-", "-")`` for a model-less scorer."""
    if model is None:
        return "-", "-"
    return model.name, str(model.version)


class ModelSet:
    """A scorer's models (main and an optional challenger) and how a batch uses them.

    Args:
        spec: the scorer.
        model: the loaded main model, or ``None`` for a model-less scorer.
        challenger: the loaded shadow or canary model, if the spec has one.
    """

    def __init__(self, spec: ScorerSpec, model: Model | None, challenger: Model | None) -> None:
        self.spec = spec
        self.main = (
            ModelSlot("main", model, followed_ref(spec.model)) if model is not None else None
        )
        self.challenger: ModelSlot | None = None
        if challenger is not None:
            role = "canary" if spec.canary is not None else "shadow"
            self.challenger = ModelSlot(role, challenger, followed_ref(spec.challenger))
        self.recent: deque[Any] = deque(maxlen=SAMPLE_SIZE)
        self._features: dict[tuple[str, ...], Features] = {}

    @property
    def slots(self) -> list[ModelSlot]:
        return [s for s in (self.main, self.challenger) if s is not None]

    @property
    def model(self) -> Model | None:
        return self.main.model if self.main is not None else None

    def split(
        self, items: list[T], event_id: Callable[[T], str]
    ) -> list[tuple[list[T], BatchModels]]:
        """Sub-batches of ``items`` with the models each is scored by, taken now."""
        main, ch = self.model, self.challenger
        if ch is None:
            return [(items, BatchModels(main))]
        if ch.role == "shadow":
            return [(items, BatchModels(main, ch.model))]
        assert self.spec.canary is not None
        share = self.spec.canary.share
        ours: list[T] = []
        theirs: list[T] = []
        for item in items:
            (theirs if canary_pick(event_id(item), share) else ours).append(item)
        parts = [(ours, BatchModels(main)), (theirs, BatchModels(ch.model, canary=True))]
        return [(part, models) for part, models in parts if part]

    def score(self, models: BatchModels, data: list[Any]) -> Scored:
        """Features, predict and ``fn`` for one batch (in the executor)."""
        start = time.perf_counter()
        scored = Scored(self.finish(models.model, data, self.predict(models.model, data)), 0.0)
        scored.compute_s = time.perf_counter() - start
        if models.shadow is not None:
            start = time.perf_counter()
            try:
                scored.shadow = self.finish(models.shadow, data, self.predict(models.shadow, data))
            except Exception as exc:
                scored.shadow_error = exc
            scored.shadow_s = time.perf_counter() - start
        return scored

    def predict(self, model: Model | None, data: list[Any]) -> Any:
        if model is None:
            return None
        features = self.spec.features or self._features.get(model.signature.inputs)
        if features is None:
            features = feature_getter(model.signature.inputs, data[0])
            self._features[model.signature.inputs] = features
        return model.predict(features(data))

    def finish(self, model: Model | None, data: list[Any], predictions: Any) -> list[bytes]:
        """The scorer's ``fn`` (or the default results), checked and encoded."""
        if self.spec.fn is not None:
            out = self.spec.fn(data, predictions)
        else:
            out = _default_results(model, predictions)
        if len(out) != len(data):
            raise ValueError(
                f"scorer {self.spec.name!r} returned {len(out)} results for {len(data)} events"
            )
        return [encode(o) for o in out]

    def check(self, candidate: Model, current: Model, sample: list[Any]) -> str | None:
        """The smoke test of a new version (see :func:`swap.smoke_test`)."""
        return smoke_test(candidate, current, sample, self.predict, self.finish)

    def follower(
        self,
        broker: Broker,
        *,
        resolve_version: Callable[[str], str],
        load: Callable[[str], Model | None],
        poll_s: float,
    ) -> Follower | None:
        """A follower of the models given as ``NAME`` / ``NAME@ALIAS``; ``None`` if none
        is, or ``poll_s`` is 0. Swaps and refusals go to the spec's ``events_topic``."""
        if poll_s <= 0 or not any(s.ref for s in self.slots):
            return None
        spec = self.spec

        async def announce(type_: str, data: dict[str, str]) -> None:
            if spec.events_topic is not None:
                event = Event.new(type_, data, source=f"scorebus/{spec.name}")
                await broker.publish(spec.events_topic, [event])

        def load_model(ref: str) -> Model:
            model = load(ref)
            assert model is not None
            return model

        return Follower(
            spec.name,
            self.slots,
            resolve_version=resolve_version,
            load=load_model,
            check=self.check,
            sample=lambda: list(self.recent),
            announce=announce,
            poll_s=poll_s,
        )


def shadow_results(
    scorer: str,
    items: Sequence[tuple[Delivery, Any, float]],
    scored: Scored,
    shadow: Model | None,
    now: float,
) -> list[ScoreResult]:
    """The shadow's results of a batch, stored as ``SCORER.shadow`` and never published.

    Their service time is the main results' with the main model's compute time
    replaced by the shadow's, so ``scorebus models compare`` sets the two models'
    latencies side by side.
    """
    assert scored.shadow is not None
    name, version = model_id(shadow)
    shift = scored.shadow_s - scored.compute_s
    return [
        ScoreResult(
            scorer=f"{scorer}.shadow",
            event_id=d.event.id,
            model=name,
            model_version=version,
            output=out,
            event_time=d.event.time or t,
            scored_at=now,
            latency_ms=(now + shift - (d.event.time or t)) * 1000,
            service_ms=(now + shift - t) * 1000,
        )
        for (d, _, t), out in zip(items, scored.shadow, strict=True)
    ]


def _default_results(model: Model | None, predictions: Any) -> list[Any]:
    if predictions is None:
        raise ValueError("a scorer without a model needs a function that returns its results")
    arr = np.asarray(predictions)
    if arr.ndim == 1:
        return [{"score": v} for v in arr.tolist()]
    names = model.signature.outputs if model is not None else ()
    if len(names) != arr.shape[1]:
        names = tuple(f"output_{i}" for i in range(arr.shape[1]))
    return [dict(zip(names, row, strict=True)) for row in arr.tolist()]
