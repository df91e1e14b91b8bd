"""Re-training on drift: ``drift.detected`` -> train on recent labelled data -> ``model.trained``.

    app.on("drift.detected")(
        retrain_job("fraud", fit, registry=root, recent_data=lambda event: last_week())
    )

The new version goes through evaluate-and-promote like any other
(``promote_job`` on ``model.trained``), so drift never replaces the champion
with a worse model. Failures and redeliveries are handled as by ``train_job``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConfigError
from ..events import Event
from ..runtime.spec import HandlerContext
from .base import MODEL_TRAINED, TRAINING_FAILED, RegistrySource, handler_name, job
from .train import Fit, train_and_publish


def retrain_job(
    model: str,
    fit: Fit,
    *,
    registry: RegistrySource,
    recent_data: Callable[[Event], str] | None = None,
    params: Mapping[str, Any] | None = None,
    alias: str | None = None,
    emits: str = MODEL_TRAINED,
) -> Callable[[Event, HandlerContext], None]:
    """A handler for ``drift.detected``: train on recent labelled data, as ``train_job`` does.

    It publishes ``model.trained`` so that ``promote_job`` decides whether the
    new version replaces the champion. Drift of another model (the event's
    ``model`` names another) is ignored.

    Args:
        model: the model name in the registry.
        fit: ``fit(TrainingData) -> Trained``.
        registry: a registry, or the root of a local one.
        recent_data: ``recent_data(event) -> dataset reference``; default the event's
            ``dataset`` field. When it raises, ``model.training_failed`` says so
            (stage ``data``).
        params: training parameters handed to ``fit``.
        alias: point this alias at each new version.
        emits: the type published on success.

    Returns:
        ``fn(event, ctx)`` named ``retrain_MODEL``, with ``emits`` set.
    """

    def from_event(event: Event) -> str:
        data = event.data if isinstance(event.data, dict) else {}
        if not isinstance(data.get("dataset"), str):
            raise ConfigError(
                f"{event.type} has no 'dataset': pass retrain_job(recent_data=...) "
                "to say where the recent labelled data is"
            )
        return str(data["dataset"])

    find = recent_data or from_event

    def retrain_handler(event: Event, ctx: HandlerContext) -> None:
        about = event.data.get("model") if isinstance(event.data, dict) else None
        if about is not None and about != model:
            return
        train_and_publish(
            ctx, model, fit, lambda: find(event),
            registry=registry, params=params or {}, alias=alias, emits=emits,
        )  # fmt: skip

    return job(retrain_handler, handler_name("retrain", model), (emits, TRAINING_FAILED))
