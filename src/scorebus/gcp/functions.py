"""Cloud Functions (2nd gen): a functions-framework CloudEvent handler for an app.

``main.py`` of the function is one line::

    from scorebus.gcp.functions import entry_point; score = entry_point("my_pipeline:app")

deployed with ``--entry-point score`` and a Pub/Sub trigger (or a push
subscription to the function's URL). For each ``messagePublished`` event the
handler decodes, scores and commits, and then returns (200). A transient
failure raises, so functions-framework answers 500 and Pub/Sub redelivers with
its backoff; a permanent failure (undecodable, schema, too large, wrong event
type) is kept in the dead-letter store and acknowledged, never retried in a
loop. Push delivery repeats messages; the idempotent store makes no second row.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from ..app import App, Settings, load_app
from ..errors import PermanentError, TransientError
from ..events import Event
from .messages import PUBLISHED, parse_push, to_event
from .runtime import PushRuntime, ThreadedPushRuntime

log = logging.getLogger(__name__)


def _topic_of(source: str) -> str | None:
    # "//pubsub.googleapis.com/projects/P/topics/T" -> "T"
    _, sep, topic = source.rpartition("/topics/")
    return topic if sep else None


def _raw_delivery_attempt() -> int | None:
    """``deliveryAttempt`` of a raw push body that functions-framework converted.

    The conversion to a CloudEvent keeps only the message and drops the attempt
    count, so read it from the request itself when there is one.
    """
    try:
        import flask

        body = flask.request.get_json(silent=True) if flask.has_request_context() else None
    except ImportError:
        return None
    attempt = body.get("deliveryAttempt") if isinstance(body, dict) else None
    return attempt if isinstance(attempt, int) and attempt > 0 else None


class FunctionHandler:
    """The callable functions-framework invokes; builds its runtime on first use."""

    def __init__(self, app: App | str, settings: Settings | None = None) -> None:
        self._app = app
        self._settings = settings
        self._runtime: ThreadedPushRuntime | None = None
        self._lock = threading.Lock()

    @property
    def runtime(self) -> ThreadedPushRuntime:
        with self._lock:
            if self._runtime is None:
                app = load_app(self._app) if isinstance(self._app, str) else self._app
                settings = self._settings or Settings.from_env()
                self._runtime = ThreadedPushRuntime(PushRuntime(app, settings))
            return self._runtime

    def __call__(self, cloud_event: Any) -> None:
        runtime = self.runtime
        ce_type = cloud_event["type"]
        source = str(cloud_event["source"])
        topic = _topic_of(source)
        try:
            if ce_type != PUBLISHED:
                raise PermanentError(f"event type {ce_type!r} is not {PUBLISHED!r}")
            body = parse_push(cloud_event.data)
            event = to_event(body, topic=topic or "")
        except PermanentError as exc:
            self._dead_letter(cloud_event, topic, exc)
            return
        attempt = body.deliveryAttempt or _raw_delivery_attempt() or 1
        outcome = runtime.deliver(event, topic=topic, attempt=attempt)
        if outcome == "retry":
            # functions-framework answers 500; Pub/Sub redelivers with its backoff.
            raise TransientError(f"event {event.id}: a transient failure; Pub/Sub will retry")

    def _dead_letter(self, cloud_event: Any, topic: str | None, exc: PermanentError) -> None:
        raw = cloud_event.data
        payload = raw if isinstance(raw, bytes) else repr(raw).encode()
        event = Event(
            id=str(cloud_event["id"]),
            type=str(cloud_event["type"]),
            source=str(cloud_event["source"]),
            data=payload,
        )
        push = self.runtime.runtime.push
        assert push is not None
        subs = self.runtime.runtime.by_topic.get(topic or "", [f"{topic or 'unknown'}.unrouted"])
        log.warning("event=%s dead-lettered at the door: %s: %s", event.id, exc.reason, exc)
        future = self.runtime.submit(
            push.dlq.add_events(topic or "unknown", subs[0], [(event, 1, exc.reason, str(exc))])
        )
        future.result(60)

    def close(self) -> None:
        if self._runtime is not None:
            self._runtime.close()


def entry_point(app: App | str, *, settings: Settings | None = None) -> Callable[[Any], None]:
    """A functions-framework CloudEvent function that runs ``app``.

    Args:
        app: the App, or ``"module:attribute"``.
        settings: store/broker/registry; ``SCOREBUS_*`` environment variables by default.
    """
    handler = FunctionHandler(app, settings)

    # functions-framework accepts only plain functions as targets.
    def score(cloud_event: Any) -> None:
        handler(cloud_event)

    score.handler = handler  # type: ignore[attr-defined]
    return score
