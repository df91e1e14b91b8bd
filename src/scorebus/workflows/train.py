"""Training as a workflow step: ``data.arrived`` (or ``drift.detected``) -> a new version.

    def fit(data: TrainingData) -> Trained:
        x, y = load(data.uri)
        model = LogisticRegression(**data.params).fit(x, y)
        return Trained(model=model, metrics={"auc": holdout_auc(model)}, rows=len(y), X=x)

    app.on("data.arrived")(train_job("fraud", fit, registry=".scorebus/models"))

The job calls ``fit`` on the dataset the event names, registers the version
with its metrics, parameters and where its data came from, and publishes
``model.trained`` ``{model, version, metrics, dataset}``. When ``fit`` fails it
publishes ``model.training_failed`` ``{model, dataset, stage, reason, error}``
and acks: no version is registered and the champion stays in place. A
``TransientError`` from ``fit`` (a data store away) is raised instead, so the
bus retries it.

Idempotent on redelivery: the version records the causing event's id in
``training_data["event"]``; before training the job looks for a version
carrying that id, and when there is one it publishes ``model.trained`` for it
again (same event id, so the broker drops the copy) instead of training twice.
The check is made again under the registry's lock just before registering, so
two copies of one event in flight at once still give one version.

With the training inputs (``Trained(X=x)``, or a sample) the version also gets
their drift reference under ``training_data["reference"]``: what ``drift_job``
compares recent traffic with.

The types ``fit`` is written against (``TrainingData``, ``Trained``) and the
job's event shapes live in :mod:`.train_types`; they are importable from here too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConfigError, ModelLoadError, TransientError, reason_of
from ..events import Event
from ..models.version import ModelVersion
from ..runtime.spec import HandlerContext
from .base import (
    MODEL_TRAINED,
    TRAINING_FAILED,
    RegistryLike,
    RegistrySource,
    TrainingFailed,
    event_data,
    first_line,
    handler_name,
    job,
    open_registry,
)
from .drift_stats import REFERENCE_KEY, reference_stats
from .train_types import Fit as Fit
from .train_types import Trained as Trained
from .train_types import TrainingData as TrainingData
from .train_types import TrainRequest
from .train_types import TrainResult as TrainResult

log = logging.getLogger(__name__)


def trained_by(registry: RegistryLike, model: str, key: str) -> ModelVersion | None:
    """The version of ``model`` whose training was caused by ``key`` (an event id), if any."""
    for version in reversed(registry.versions(model)):
        mv = registry.get(model, version)
        if isinstance(mv.training_data, dict) and mv.training_data.get("event") == key:
            return mv
    return None


def train(
    model: str,
    fit: Fit,
    dataset: str,
    *,
    registry: RegistrySource,
    params: Mapping[str, Any] | None = None,
    alias: str | None = None,
    event: Event | None = None,
) -> TrainResult:
    """Fit ``model`` on ``dataset`` and register the version (once per causing event).

    Args:
        model: the model name in the registry.
        fit: the user's training function.
        dataset: the dataset reference handed to ``fit``.
        registry: a registry, or the root of a local one.
        params: training parameters handed to ``fit``.
        alias: point this alias at the new version (e.g. ``candidate``).
        event: the causing event; its id makes the training idempotent.

    Returns:
        The registered version, or the one registered earlier for ``event``.

    Raises:
        TrainingFailed: ``fit`` raised, or returned what cannot be registered.
        TransientError: ``fit`` or the registry hit something that may heal.
    """
    reg = open_registry(registry)
    if (done := _done(reg, model, event)) is not None:
        return done
    data = TrainingData(model=model, uri=dataset, params=dict(params or {}), event=event)
    try:
        trained = fit(data)
    except TransientError:
        raise
    except Exception as exc:
        raise TrainingFailed("fit", reason_of(exc), first_line(exc)) from exc
    if not isinstance(trained, Trained):
        got = type(trained).__name__
        raise TrainingFailed("fit", "TypeError", f"fit must return Trained(...), got {got}")
    source: dict[str, Any] = {"uri": dataset, "rows": trained.rows}
    if event is not None:
        source["event"] = event.id
    if trained.X is not None:
        source[REFERENCE_KEY] = _reference(trained)
    # Fitting runs unlocked (it may take hours); checking and registering do not,
    # so a copy of the event trained at the same time cannot add a second version.
    with reg.lock(f"train-{model}"):
        if (done := _done(reg, model, event)) is not None:
            return done
        try:
            mv = reg.register(
                model,
                trained.model,
                features=tuple(trained.features) if trained.features else None,
                metrics=trained.metrics,
                params=trained.params if trained.params is not None else (params or None),
                training_data=source,
                alias=alias,
            )
        except (ConfigError, ModelLoadError, TypeError, ValueError) as exc:
            raise TrainingFailed("register", reason_of(exc), first_line(exc)) from exc
    log.info("model=%s version=%s trained on %s metrics=%s", model, mv.version, dataset, mv.metrics)
    return _result(mv, dataset)


def _reference(trained: Trained) -> dict[str, Any]:
    """The drift reference of ``trained.X``; ``TrainingFailed`` when it cannot be made."""
    names = trained.features
    if names is None:
        names = [str(name) for name in getattr(trained.model, "feature_names_in_", ())]
    try:
        if not len(names):
            raise ConfigError("Trained(X=...) needs features=[...] to name the columns of X")
        return reference_stats(trained.X, [str(name) for name in names])
    except ConfigError as exc:
        raise TrainingFailed("fit", reason_of(exc), first_line(exc)) from exc


def _done(reg: RegistryLike, model: str, event: Event | None) -> TrainResult | None:
    done = trained_by(reg, model, event.id) if event is not None else None
    if done is None:
        return None
    log.info("model=%s version %s was trained for this event already", model, done.version)
    return _result(done, "", reused=True)


def _result(mv: ModelVersion, dataset: str, *, reused: bool = False) -> TrainResult:
    source = mv.training_data if isinstance(mv.training_data, dict) else {}
    return TrainResult(
        model=mv.name,
        version=mv.version,
        metrics=dict(mv.metrics),
        dataset=str(source.get("uri", dataset)),
        reused=reused,
    )


def train_and_publish(
    ctx: HandlerContext,
    model: str,
    fit: Fit,
    dataset: Callable[[], str],
    *,
    registry: RegistrySource,
    params: Mapping[str, Any],
    alias: str | None,
    emits: str,
) -> None:
    """Train on ``dataset()`` for ``ctx.event``; publish ``emits`` or ``model.training_failed``.

    The body of the train and re-train jobs. ``dataset`` failing (but for a
    ``TransientError``) is a training failure at stage ``data``.
    """
    event = ctx.event
    uri: str | None = None
    try:
        try:
            uri = dataset()
        except TransientError:
            raise
        except Exception as exc:
            raise TrainingFailed("data", reason_of(exc), first_line(exc)) from exc
        result = train(model, fit, uri, registry=registry, params=params, alias=alias, event=event)
    except TrainingFailed as failed:
        log.warning("event=%s model=%s training failed: %s", event.id, model, failed)
        ctx.publish(
            TRAINING_FAILED,
            {
                "model": model,
                "dataset": uri,
                "stage": failed.stage,
                "reason": failed.reason,
                "error": failed.error,
            },
        )
        return
    ctx.publish(emits, result.event_data())


def train_job(
    model: str,
    fit: Fit,
    *,
    registry: RegistrySource,
    alias: str | None = None,
    emits: str = MODEL_TRAINED,
) -> Callable[[Event, HandlerContext], None]:
    """A handler for ``data.arrived`` ``{"dataset": REF, "params": {...}}``: train, register.

    Events naming another model (``"model": "other"``) are ignored, so one
    topic can carry the data of several models.

    Args:
        model: the model name in the registry.
        fit: ``fit(TrainingData) -> Trained``.
        registry: a registry, or the root of a local one.
        alias: point this alias at each new version (not ``champion``: let promotion do that).
        emits: the type published on success.

    Returns:
        ``fn(event, ctx)`` named ``train_MODEL``, with ``emits`` set.

    Raises:
        SchemaError: (from the handler) the event's data has no ``dataset``: dead-lettered.
    """

    def train_handler(event: Event, ctx: HandlerContext) -> None:
        request = event_data(event.data, TrainRequest)
        if request.model is not None and request.model != model:
            return
        train_and_publish(
            ctx, model, fit, lambda: request.dataset,
            registry=registry, params=request.params, alias=alias, emits=emits,
        )  # fmt: skip

    return job(train_handler, handler_name("train", model), (emits, TRAINING_FAILED))
