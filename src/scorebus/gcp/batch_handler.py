"""Batch prediction on every file that lands in Cloud Storage, as a workflow handler.

    from scorebus import App
    from scorebus.gcp.batch_handler import EVENT_TYPES, batch_prediction_handler
    from scorebus.gcp.storage import GcsStorage

    app = App("scoring")
    app.on(*EVENT_TYPES, topic="landing", name="score_files", ack_deadline_s=600)(
        batch_prediction_handler(model="fraud@champion", schema=Transaction,
                                 storage=GcsStorage(), publish_topic="events")
    )

The bucket's notifications (or an Eventarc trigger) arrive on ``landing``; for
each finalized object the handler runs
:func:`~scorebus.runtime.batch_job.predict_file` (the generic core, also behind
the ``file.landed`` job of :mod:`scorebus.workflows`) on it and publishes

- ``predictions.ready``: the :class:`~scorebus.runtime.batch.BatchReport`
  (``uri``, ``output_uri``, ``errors_uri``, ``rows``, ``scored``, ``bad``,
  ``bad_rows``, ``model``, ``seconds``) and the object's ``generation``;
- ``predictions.failed``: ``uri``, ``generation``, ``reason`` and ``error``,
  when the file itself cannot be scored (unknown format, unreadable, gone).

Other failures are the deployment's, not the file's, and raise: a transient
one (storage or model away) is retried with backoff, a lasting one (no
permission, a model that will not load, a schema without the model's inputs)
is dead-lettered after the retries, to be replayed once fixed. Files the job
writes (``*.predictions.*``, ``*.errors.jsonl``) and other event kinds (a
deletion) are ignored, so outputs beside the input never trigger a loop.
A redelivered notification scores the file again and overwrites the same
outputs; the published events keep their ids, so consumers see them once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from ..events import Event
from ..models.base import Model
from ..runtime.batch import is_output
from ..runtime.batch_job import FAILED, READY, predict_file
from ..runtime.files import Storage
from ..runtime.spec import HandlerContext, PostProcess
from .storage import FINALIZED, FileRef, from_event, split_uri

log = logging.getLogger(__name__)

MESSAGE_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
EVENT_TYPES = (MESSAGE_PUBLISHED, FINALIZED)
"""The event types to register the handler for: Pub/Sub notifications and Eventarc."""
__all__ = [
    "EVENT_TYPES",
    "FAILED",
    "MESSAGE_PUBLISHED",
    "READY",
    "BatchPredictionHandler",
    "batch_prediction_handler",
]

ModelSpec = str | Model | Callable[[], Model]


class BatchPredictionHandler:
    """The handler's state: the model (resolved once), storage and options.

    See :func:`batch_prediction_handler` for the arguments.
    """

    def __init__(
        self,
        *,
        model: ModelSpec,
        schema: type[Any] | None = None,
        storage: Storage | None = None,
        fn: PostProcess | None = None,
        batch_size: int = 4096,
        prefix: str = "",
        output_dir: str | None = None,
        publish_topic: str | None = None,
    ) -> None:
        self._model_spec = model
        self._model: Model | None = None
        self._lock = threading.Lock()
        self.schema, self.fn, self.batch_size = schema, fn, batch_size
        self.prefix, self.output_dir, self.publish_topic = prefix, output_dir, publish_topic
        self._storage = storage

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            from .storage import GcsStorage

            self._storage = GcsStorage()
        return self._storage

    def model(self) -> Model:
        """The model, resolved and loaded on first use (registry refs via ``SCOREBUS_*``)."""
        with self._lock:
            if self._model is None:
                spec = self._model_spec
                if isinstance(spec, str):
                    from ..app import Settings
                    from ..app.run import model_resolver

                    self._model = model_resolver(Settings.from_env())(spec)
                else:  # as the worker does: an instance or a factory's product is loaded here
                    self._model = spec if isinstance(spec, Model) else spec()
                    self._model.load()
            return self._model

    def wants(self, ref: FileRef) -> bool:
        """False for the job's own outputs and objects outside ``prefix``."""
        return not is_output(ref.uri) and split_uri(ref.uri)[1].startswith(self.prefix)

    def __call__(self, event: Event, ctx: HandlerContext) -> None:
        ref = from_event(event)  # DecodeError: not a storage event at all -> dead letter
        if ref is None or not self.wants(ref):
            log.debug("event=%s ignored: not a new input file", event.id)
            return
        predict_file(
            ctx,
            ref.uri,
            model=self.model(),
            schema=self.schema,
            storage=self.storage,
            fn=self.fn,
            batch_size=self.batch_size,
            output_dir=self.output_dir,
            content_type=ref.content_type,
            publish_topic=self.publish_topic,
            extra={"generation": ref.generation},
        )


def batch_prediction_handler(
    *,
    model: ModelSpec,
    schema: type[Any] | None = None,
    storage: Storage | None = None,
    fn: PostProcess | None = None,
    batch_size: int = 4096,
    prefix: str = "",
    output_dir: str | None = None,
    publish_topic: str | None = None,
) -> Callable[[Event, HandlerContext], None]:
    """A workflow handler ``fn(event, ctx)`` for ``@app.on(*EVENT_TYPES, ...)``.

    Args:
        model: ``NAME[@VERSION|@ALIAS]`` in the registry (``SCOREBUS_REGISTRY``),
            a loaded ``Model``, or a factory; resolved on the first file.
        schema: each row's type, as for ``batch_predict``.
        storage: where the files are; ``GcsStorage()`` by default.
        fn: ``fn(rows, predictions) -> results``, as a scorer's.
        batch_size: rows per ``predict`` call.
        prefix: only objects whose name starts with this are scored.
        output_dir: ``gs://BUCKET/DIR`` for the outputs; beside the input by default.
        publish_topic: where ``predictions.ready``/``failed`` go; the handler's topic
            by default (set it when that topic is the bucket's notification topic).

    Returns:
        The handler; its state is at ``handler.state`` (a :class:`BatchPredictionHandler`).
    """
    state = BatchPredictionHandler(
        model=model,
        schema=schema,
        storage=storage,
        fn=fn,
        batch_size=batch_size,
        prefix=prefix,
        output_dir=output_dir,
        publish_topic=publish_topic,
    )

    # A plain function: App names a handler after its function's __name__.
    def predict_landed_file(event: Event, ctx: HandlerContext) -> None:
        state(event, ctx)

    predict_landed_file.state = state  # type: ignore[attr-defined]
    return predict_landed_file
