"""Batch prediction as a workflow step: score one file, publish what came of it.

The core shared by every "a file arrived, score it" handler (the built-in
``file.landed`` job in :mod:`scorebus.workflows`, the Cloud Storage handler in
:mod:`scorebus.gcp.batch_handler`): they find the file in their own event shape
and call :func:`predict_file`, which runs :func:`~scorebus.runtime.batch.batch_predict`
and publishes

- ``predictions.ready``: the :class:`~scorebus.runtime.batch.BatchReport`
  (``uri``, ``output_uri``, ``errors_uri``, ``format``, ``rows``, ``scored``,
  ``bad``, ``bad_rows`` with row numbers, ``model``, ``seconds``);
- ``predictions.failed``: ``uri``, ``reason`` and ``error``, when the file
  itself cannot be scored (unknown format, unreadable, gone).

Other failures belong to the deployment, not the file, and raise: a transient
one (storage or model away) is retried with backoff, a lasting one (a schema
without the model's inputs, an output that would overwrite the input) is
dead-lettered after the retries, to be replayed once fixed.

Example::

    @app.on("file.landed")
    def score_file(event, ctx):
        predict_file(ctx, event.data["uri"], model=model, schema=Transaction)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ..errors import PermanentError, reason_of
from ..models.base import Model
from .batch import BatchReport, batch_predict, output_uris
from .files import Storage, detect_format
from .spec import HandlerContext, PostProcess

log = logging.getLogger(__name__)

READY = "predictions.ready"
FAILED = "predictions.failed"


def output_in(output_dir: str | None, uri: str, content_type: str | None = None) -> str | None:
    """Where the predictions of ``uri`` go when they must land in ``output_dir``.

    Returns:
        ``OUTPUT_DIR/NAME.predictions.EXT``, or ``None`` (beside the input) without a folder.
    """
    if output_dir is None:
        return None
    out, _ = output_uris(uri, detect_format(uri, content_type))
    return f"{output_dir.rstrip('/')}/{out.rsplit('/', 1)[-1]}"


def predict_file(
    ctx: HandlerContext,
    uri: str,
    *,
    model: Model,
    schema: type[Any] | None = None,
    storage: Storage | None = None,
    fn: PostProcess | None = None,
    batch_size: int = 4096,
    output_dir: str | None = None,
    content_type: str | None = None,
    publish_topic: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> BatchReport | None:
    """Score the file ``uri`` and publish ``predictions.ready`` or ``predictions.failed``.

    A redelivered event scores the file again and overwrites the same outputs;
    the published events keep their ids (they derive from the cause), so
    consumers see them once.

    Args:
        ctx: the handler's context; the outcome is published through it.
        uri: the file (a path, ``file://`` or a URI ``storage`` serves).
        model: a loaded model.
        schema: each row's type, as for ``batch_predict``.
        storage: where the file is; local files by default.
        fn: ``fn(rows, predictions) -> results``, as a scorer's.
        batch_size: rows per ``predict`` call.
        output_dir: a folder for the outputs; beside the input by default.
        content_type: the file's media type, when its name has no known extension.
        publish_topic: where the outcome goes; the handler's topic by default.
        extra: fields added to either event (e.g. the object's ``generation``).

    Returns:
        The report, or ``None`` when the file could not be scored.

    Raises:
        TransientError: the model or the storage is unavailable (retry).
        ConfigError: the job itself is wrong (schema without the model's inputs).
    """
    extra = dict(extra or {})
    try:
        report = batch_predict(
            uri,
            model=model,
            schema=schema,
            out_uri=output_in(output_dir, uri, content_type),
            batch_size=batch_size,
            storage=storage,
            fn=fn,
            content_type=content_type,
        )
    except (PermanentError, FileNotFoundError) as exc:
        reason = "not_found" if isinstance(exc, FileNotFoundError) else reason_of(exc)
        log.warning(
            "event=%s file=%s model=%s@%s failed: %s: %s",
            ctx.event.id, uri, model.name, model.version, reason, exc,
        )  # fmt: skip
        failed = {"uri": uri, **extra, "reason": reason, "error": str(exc)}
        ctx.publish(FAILED, failed, topic=publish_topic)
        return None
    log.info(
        "event=%s file=%s model=%s rows=%d scored=%d bad=%d",
        ctx.event.id, uri, report.model, report.rows, report.scored, report.bad,
    )  # fmt: skip
    ctx.publish(READY, {**report.to_dict(), **extra}, topic=publish_topic)
    return report
