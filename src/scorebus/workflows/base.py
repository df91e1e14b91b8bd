"""What the built-in jobs share: event types, the registry they need, their errors.

A job is a plain handler ``fn(event, ctx)`` built by a factory
(:func:`~scorebus.workflows.train_job`, ...). Each one names the event types it
publishes in its ``emits`` attribute, which ``app.on`` reads to draw the
routing graph (``scorebus workflows``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import ConfigError, PermanentError, ScorebusError
from ..events import Schema
from ..models.registry import ModelRegistry
from ..models.registry import open_registry as open_registry_at
from ..models.version import ModelVersion

DATA_ARRIVED = "data.arrived"
DRIFT_DETECTED = "drift.detected"
FILE_LANDED = "file.landed"
MODEL_TRAINED = "model.trained"
TRAINING_FAILED = "model.training_failed"
MODEL_PROMOTED = "model.promoted"
MODEL_REJECTED = "model.rejected"

H = TypeVar("H", bound=Callable[..., Any])
T = TypeVar("T")


# Jobs take any registry: the local one or the Cloud Storage one.
RegistryLike = ModelRegistry

RegistrySource = RegistryLike | str | os.PathLike[str]
"""A registry object, or where one lives: a folder or ``gs://BUCKET[/PREFIX]``."""


class UnknownVersionError(PermanentError):
    """A job names a model version the registry does not hold."""

    reason = "unknown_version"


class TrainingFailed(ScorebusError):
    """Training did not give a version; the champion is untouched.

    Attributes:
        stage: ``data`` (finding the dataset), ``fit`` or ``register``.
        reason: short and machine-readable (the error's kind).
        error: the message.
    """

    def __init__(self, stage: str, reason: str, error: str) -> None:
        super().__init__(f"{stage}: {reason}: {error}")
        self.stage, self.reason, self.error = stage, reason, error


def open_registry(registry: RegistrySource) -> RegistryLike:
    """``registry`` itself, or the registry at that folder or ``gs://`` URL."""
    if isinstance(registry, str | os.PathLike):
        return open_registry_at(registry)
    return registry


def get_version(registry: RegistryLike, name: str, version: str | int) -> ModelVersion:
    """``registry.get``, with an unknown name or version as a dead-letter reason.

    Raises:
        UnknownVersionError: the registry has no such model or version.
    """
    try:
        return registry.get(name, version)
    except ConfigError as exc:
        raise UnknownVersionError(str(exc)) from exc


def event_data(data: Any, type_: type[T]) -> T:
    """The event's data as ``type_`` (already converted when the handler declared a schema).

    Raises:
        SchemaError: the data lacks a field or has one of the wrong type (dead-lettered).
    """
    if isinstance(data, type_):
        return data
    return Schema(type_).convert(data)


def first_line(exc: BaseException, limit: int = 500) -> str:
    """An error's message, its first line only (libraries append paragraphs of advice)."""
    text = str(exc).strip().split("\n", 1)[0][:limit]
    return text or type(exc).__name__


def job(fn: H, name: str, emits: tuple[str, ...]) -> H:
    """Name a job's handler (``app.on`` registers it under ``__name__``) and its outputs."""
    fn.__name__ = fn.__qualname__ = name
    fn.emits = emits  # type: ignore[attr-defined]
    return fn


def handler_name(prefix: str, model: str) -> str:
    """``train_fraud``: a valid handler name for a model name (which may hold ``@``)."""
    return f"{prefix}_{model.split('@', 1)[0]}"
