"""Evaluate and promote: a new version replaces the champion only when it is better.

    app.on("model.trained")(promote_job("fraud", metric="auc", margin=0.005,
                                        registry=".scorebus/models"))

The rule, for ``higher_is_better`` (the reverse otherwise): with no champion
yet the candidate is promoted; else it is promoted when
``candidate - champion >= margin`` and ``candidate > champion`` (with
``margin=0`` it must be strictly better). A candidate without the metric, or a
champion without it (register it with metrics, or pass ``evaluate=``), is
rejected: a comparison that cannot be made never moves the champion.

The figures are the metrics each version was registered with, or, with
``evaluate=``, fresh ones: ``evaluate(model, holdout) -> metrics`` on the same
holdout for both versions. The job publishes ``model.promoted`` or
``model.rejected``, each ``{model, version, alias, previous, promoted, metric,
candidate_value, champion_value, margin, reason}``. A version that does not
exist is dead-lettered (reason ``unknown_version``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from ..errors import ConfigError, PermanentError, TransientError, reason_of
from ..events import Event
from ..models.base import Model
from ..models.registry import DEFAULT_ALIAS
from ..models.version import ModelVersion
from ..runtime.spec import HandlerContext
from .base import (
    MODEL_PROMOTED,
    MODEL_REJECTED,
    RegistryLike,
    RegistrySource,
    event_data,
    first_line,
    get_version,
    handler_name,
    job,
    open_registry,
)

log = logging.getLogger(__name__)

Evaluate = Callable[[Model, str], Mapping[str, float]]
"""``evaluate(model, holdout) -> metrics``: the loaded version and a dataset reference."""


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of evaluate-and-promote, as ``model.promoted``/``rejected`` carry it."""

    model: str
    version: str
    alias: str
    previous: str | None
    promoted: bool
    metric: str
    candidate_value: float | None
    champion_value: float | None
    margin: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dict(msgspec.to_builtins(self))


class TrainedEvent(msgspec.Struct, kw_only=True):
    """``model.trained`` data (the fields promotion reads)."""

    model: str
    version: str | int
    holdout: str | None = None


def decide(
    candidate: float | None,
    champion: float | None,
    *,
    metric: str,
    margin: float = 0.0,
    higher_is_better: bool = True,
    has_champion: bool = True,
) -> tuple[bool, str]:
    """The promotion rule: ``(promote, reason)``.

    Args:
        candidate: the new version's figure, ``None`` when it has none.
        champion: the current holder's figure, ``None`` when it has none.
        metric: the metric's name, for the reason.
        margin: how much better (``>= 0``) the candidate must be.
        higher_is_better: ``False`` for losses and errors.
        has_champion: ``False`` when the alias points nowhere yet.
    """
    if not has_champion:
        return True, "no champion yet"
    if candidate is None or math.isnan(candidate):
        return False, f"the candidate has no {metric!r} figure"
    if champion is None or math.isnan(champion):
        return False, f"the champion has no {metric!r} figure to compare with"
    gain = candidate - champion if higher_is_better else champion - candidate
    better = "higher" if higher_is_better else "lower"
    if gain > 0 and gain >= margin:
        return True, f"{metric} {better} by {gain:.6g} (margin {margin:g})"
    if gain <= 0:
        return False, f"{metric} not {better} than the champion's ({gain:+.6g})"
    return False, f"{metric} {better} by {gain:.6g}, less than the margin {margin:g}"


def evaluate_and_promote(
    model: str,
    version: str | int,
    *,
    registry: RegistrySource,
    metric: str = "auc",
    margin: float = 0.0,
    higher_is_better: bool = True,
    alias: str = DEFAULT_ALIAS,
    evaluate: Evaluate | None = None,
    holdout: str | None = None,
    trust: bool = False,
) -> Decision:
    """Compare ``version`` with the holder of ``alias`` and promote it if it wins.

    Promotions of one model are serialised by the registry's lock, so two
    candidates judged at once cannot both displace the champion.

    Args:
        model: the model name.
        version: the candidate version.
        registry: a registry, or the root of a local one.
        metric: the metric compared.
        margin: how much better (``>= 0``) the candidate must be.
        higher_is_better: ``False`` for losses and errors.
        alias: the alias to move.
        evaluate: measure both versions on ``holdout`` instead of their stored metrics.
        holdout: the dataset ``evaluate`` gets.
        trust: allow pickle/joblib files when loading for ``evaluate``.

    Returns:
        The decision (already applied to the registry).

    Raises:
        UnknownVersionError: no such model or version.
        ConfigError: a negative margin, or ``evaluate`` without a holdout.
    """
    check_margin(margin)
    if evaluate is not None and not holdout:
        raise ConfigError("evaluate= needs a holdout dataset: pass holdout= or send 'holdout'")
    reg = open_registry(registry)
    candidate = get_version(reg, model, version)

    def decision(
        promoted: bool, reason: str, previous: str | None, values: tuple[float | None, ...]
    ) -> Decision:
        return Decision(
            model=model,
            version=candidate.version,
            alias=alias,
            previous=previous,
            promoted=promoted,
            metric=metric,
            candidate_value=values[0],
            champion_value=values[1],
            margin=margin,
            reason=reason,
        )

    with reg.lock(f"promote-{model}"):
        holder = reg.aliases(model).get(alias)
        if holder == candidate.version:  # a redelivered model.trained: promoted already
            earlier = reg.alias_state(model).history.get(alias, [])
            previous = earlier[-1] if earlier else None
            return decision(True, f"already the {alias}", previous, (None, None))
        champion = get_version(reg, model, holder) if holder is not None else None
        try:
            values = _figures(reg, candidate, champion, metric, evaluate, holdout, trust)
        except _EvaluationFailed as exc:
            return decision(False, str(exc), holder, (None, None))
        promote, reason = decide(
            *values,
            metric=metric,
            margin=margin,
            higher_is_better=higher_is_better,
            has_champion=champion is not None,
        )
        if promote:
            reg.promote(model, candidate.version, alias)
    log.info(
        "model=%s version=%s %s as %s: %s",
        model, candidate.version, "promoted" if promote else "rejected", alias, reason,
    )  # fmt: skip
    return decision(promote, reason, holder, values)


def check_margin(margin: float) -> None:
    """Raise ``ConfigError`` unless ``margin`` is a finite number ``>= 0``."""
    if not math.isfinite(margin) or margin < 0:
        raise ConfigError(f"margin={margin!r}: use a number >= 0 (how much better to promote)")


class _EvaluationFailed(Exception):
    """``evaluate`` raised: the candidate is rejected with this message."""


def _figures(
    reg: RegistryLike,
    candidate: ModelVersion,
    champion: ModelVersion | None,
    metric: str,
    evaluate: Evaluate | None,
    holdout: str | None,
    trust: bool,
) -> tuple[float | None, float | None]:
    if evaluate is None or holdout is None:
        champ = champion.metrics.get(metric) if champion is not None else None
        return candidate.metrics.get(metric), champ

    def measure(mv: ModelVersion | None) -> float | None:
        if mv is None:
            return None
        try:
            value = evaluate(reg.load(mv.ref, trust=trust), holdout).get(metric)
        except TransientError:
            raise
        except Exception as exc:
            why = f"{reason_of(exc)}: {first_line(exc)}"
            raise _EvaluationFailed(f"evaluating {mv.ref} failed: {why}") from exc
        return None if value is None else float(value)

    return measure(candidate), measure(champion)


def promote_job(
    model: str,
    *,
    registry: RegistrySource,
    metric: str = "auc",
    margin: float = 0.0,
    higher_is_better: bool = True,
    alias: str = DEFAULT_ALIAS,
    evaluate: Evaluate | None = None,
    holdout: str | None = None,
    trust: bool = False,
) -> Callable[[Event, HandlerContext], None]:
    """A handler for ``model.trained``: evaluate-and-promote the new version.

    Publishes ``model.promoted`` or ``model.rejected`` (see the module). Events
    about another model are ignored. The event's ``holdout`` field, when set,
    overrides ``holdout``.

    Args:
        model: the model name; other models' events are ignored.
        registry: a registry, or the root of a local one.
        metric: the metric compared.
        margin: how much better (``>= 0``) the candidate must be.
        higher_is_better: ``False`` for losses and errors.
        alias: the alias to move.
        evaluate: ``evaluate(model, holdout) -> metrics`` instead of the stored metrics.
        holdout: the dataset ``evaluate`` gets.
        trust: allow pickle/joblib files when loading for ``evaluate``.

    Returns:
        ``fn(event, ctx)`` named ``promote_MODEL``, with ``emits`` set.

    Raises:
        ConfigError: a negative margin.
    """
    check_margin(margin)

    def promote_handler(event: Event, ctx: HandlerContext) -> None:
        trained = event_data(event.data, TrainedEvent)
        if trained.model != model:
            return
        if evaluate is not None and not (trained.holdout or holdout):
            raise PermanentError(
                f"promote_job({model!r}, evaluate=...) has no holdout: pass holdout= "
                "or put 'holdout' in the model.trained data"
            )
        decision = evaluate_and_promote(
            model,
            trained.version,
            registry=registry,
            metric=metric,
            margin=margin,
            higher_is_better=higher_is_better,
            alias=alias,
            evaluate=evaluate,
            holdout=trained.holdout or holdout,
            trust=trust,
        )
        ctx.publish(MODEL_PROMOTED if decision.promoted else MODEL_REJECTED, decision.to_dict())

    return job(promote_handler, handler_name("promote", model), (MODEL_PROMOTED, MODEL_REJECTED))
