"""Wire the model lifecycle into an app in one call.

    app = App("fraud")
    install(app, "fraud", fit, registry=".scorebus/models", metric="auc", margin=0.005)

registers, on the app's events topic::

    data.arrived    -> train_fraud    -> model.trained | model.training_failed
    drift.detected  -> retrain_fraud  -> model.trained | model.training_failed
    model.trained   -> promote_fraud  -> model.promoted | model.rejected
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..app import App
from ..events import Event
from ..models.registry import DEFAULT_ALIAS
from ..runtime.config import RetryPolicy
from .base import DATA_ARRIVED, DRIFT_DETECTED, MODEL_TRAINED, RegistrySource
from .promote import Evaluate, promote_job
from .retrain import retrain_job
from .train import Fit, train_job


def install(
    app: App,
    model: str,
    fit: Fit,
    *,
    registry: RegistrySource,
    metric: str = "auc",
    margin: float = 0.0,
    higher_is_better: bool = True,
    alias: str = DEFAULT_ALIAS,
    evaluate: Evaluate | None = None,
    holdout: str | None = None,
    retrain: bool = True,
    recent_data: Callable[[Event], str] | None = None,
    params: Mapping[str, Any] | None = None,
    retry: RetryPolicy | None = None,
    ack_deadline_s: float = 600.0,
) -> list[str]:
    """Register the train, re-train and evaluate-and-promote jobs of ``model`` on ``app``.

    Args:
        app: the app to register on.
        model: the model name in the registry.
        fit: ``fit(TrainingData) -> Trained``.
        registry: a registry, or the root of a local one.
        metric: what promotion compares (see :func:`~scorebus.workflows.promote_job`).
        margin: how much better (``>= 0``) a candidate must be.
        higher_is_better: ``False`` for losses and errors.
        alias: the alias promotion moves.
        evaluate: ``evaluate(model, holdout) -> metrics`` instead of stored metrics.
        holdout: the dataset ``evaluate`` gets.
        retrain: also re-train on ``drift.detected``.
        recent_data: ``recent_data(event) -> dataset`` for re-training.
        params: training parameters for re-training (``data.arrived`` carries its own).
        retry: backoff and attempts for transient failures.
        ack_deadline_s: lease of each job's events (training can take a while).

    Returns:
        The names of the handlers registered.

    Raises:
        ConfigError: a name already taken on ``app``, or a negative margin.
    """
    jobs: list[tuple[str, Callable[[Event, Any], None]]] = [
        (DATA_ARRIVED, train_job(model, fit, registry=registry)),
        (
            MODEL_TRAINED,
            promote_job(
                model,
                registry=registry,
                metric=metric,
                margin=margin,
                higher_is_better=higher_is_better,
                alias=alias,
                evaluate=evaluate,
                holdout=holdout,
            ),
        ),
    ]
    if retrain:
        fn = retrain_job(model, fit, registry=registry, recent_data=recent_data, params=params)
        jobs.append((DRIFT_DETECTED, fn))
    for event_type, fn in jobs:
        app.on(event_type, retry=retry, ack_deadline_s=ack_deadline_s)(fn)
    return [fn.__name__ for _, fn in jobs]
