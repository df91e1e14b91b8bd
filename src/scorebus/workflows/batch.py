"""Batch prediction as a workflow step: ``file.landed`` ``{"uri": ...}`` -> a results file.

    app.on("file.landed", ack_deadline_s=600)(
        batch_predict_job("fraud@champion", schema=Transaction, registry=".scorebus/models")
    )

Each event names one file (CSV, JSON lines or Parquet; ``content_type`` when
its name has no known extension). The job scores it in batches, writes
``NAME.predictions.EXT`` and ``NAME.errors.jsonl`` beside it (or in
``output_dir``) and publishes ``predictions.ready`` with the report, bad rows
with their row numbers included, or ``predictions.failed`` with the reason
(see :mod:`scorebus.runtime.batch_job`). A registry reference is resolved for
every file, so a file that lands after a promotion is scored by the new
champion; the model is loaded again only when the reference moved. The job's
own outputs are ignored if they are announced too, so they never loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import msgspec

from ..errors import ConfigError
from ..events import Event
from ..models.base import Model
from ..runtime.batch import is_output
from ..runtime.batch_job import FAILED, READY, predict_file
from ..runtime.files import Storage
from ..runtime.spec import HandlerContext, PostProcess
from .base import RegistrySource, event_data, handler_name, job, open_registry

log = logging.getLogger(__name__)


class FileLanded(msgspec.Struct, kw_only=True):
    """``file.landed`` data: the file and, optionally, its media type."""

    uri: str
    content_type: str | None = None


class RegistryModel:
    """A registry reference resolved on each call, loaded again only when it moves.

    Args:
        registry: a registry, or the root of a local one.
        ref: ``NAME[@VERSION|@ALIAS]``.
        trust: allow pickle/joblib files.
    """

    def __init__(self, registry: RegistrySource, ref: str, *, trust: bool = False) -> None:
        self.registry, self.ref, self.trust = open_registry(registry), ref, trust
        self._lock = threading.Lock()
        self._model: Model | None = None

    def __call__(self) -> Model:
        with self._lock:
            version = self.registry.resolve(self.ref)
            if self._model is None or str(self._model.version) != version.version:
                self._model = self.registry.load(version.ref, trust=self.trust)
            return self._model


def batch_predict_job(
    model: str | Model,
    *,
    schema: type[Any] | None = None,
    registry: RegistrySource | None = None,
    storage: Storage | None = None,
    fn: PostProcess | None = None,
    batch_size: int = 4096,
    output_dir: str | None = None,
    publish_topic: str | None = None,
    trust: bool = False,
) -> Callable[[Event, HandlerContext], None]:
    """A handler for ``file.landed``: score the file, publish the report.

    Args:
        model: ``NAME[@VERSION|@ALIAS]`` in ``registry``, or a ``Model`` (loaded on first use).
        schema: each row's type (msgspec Struct, pydantic model, ...).
        registry: a registry, or the root of a local one; needed for a reference.
        storage: where the files are; local paths and ``file://`` by default
            (``scorebus.gcp.storage.GcsStorage()`` for ``gs://``).
        fn: ``fn(rows, predictions) -> results``, as a scorer's.
        batch_size: rows per ``predict`` call.
        output_dir: a folder for the outputs; beside the input by default.
        publish_topic: where the outcome goes; the handler's topic by default.
        trust: allow pickle/joblib model files.

    Returns:
        ``fn(event, ctx)`` named ``batch_predict_MODEL``, with ``emits`` set.

    Raises:
        ConfigError: a reference without a registry.
    """
    if isinstance(model, str):
        if registry is None:
            raise ConfigError(f"batch_predict_job({model!r}) needs registry= to resolve it")
        provider: Callable[[], Model] = RegistryModel(registry, model, trust=trust)
        name = model
    else:
        provider, name = _loaded_once(model), model.name

    def batch_predict_handler(event: Event, ctx: HandlerContext) -> None:
        landed = event_data(event.data, FileLanded)
        if is_output(landed.uri):
            log.debug("event=%s ignored: %s is a batch job's output", event.id, landed.uri)
            return
        predict_file(
            ctx,
            landed.uri,
            model=provider(),
            schema=schema,
            storage=storage,
            fn=fn,
            batch_size=batch_size,
            output_dir=output_dir,
            content_type=landed.content_type,
            publish_topic=publish_topic,
        )

    return job(batch_predict_handler, handler_name("batch_predict", name), (READY, FAILED))


def _loaded_once(model: Model) -> Callable[[], Model]:
    lock = threading.Lock()
    loaded: list[Model] = []

    def provider() -> Model:
        with lock:
            if not loaded:
                model.load()
                loaded.append(model)
            return model

    return provider
