"""HTTP ingest: CloudEvents over HTTP, checked at the door, published onto a broker.

``POST /topics/{topic}/events`` accepts the three CloudEvents HTTP modes:

- binary: ``ce-specversion``, ``ce-id``, ``ce-source``, ``ce-type`` (and optional
  ``ce-time``, ``ce-subject``, extensions) headers; the body is the data and
  ``Content-Type`` its ``datacontenttype``;
- structured: ``Content-Type: application/cloudevents+json``, one JSON object;
- batch: ``Content-Type: application/cloudevents-batch+json``, a JSON array of
  such objects, accepted or refused as a whole.

It answers ``202 {"ids": [...]}`` once the broker has accepted the events, or a
4xx with ``{"error": ..., "field": ..., "index": ...}`` (``field`` is the
CloudEvents attribute, or ``data.PATH`` for a schema violation; ``index`` the
position in a batch): 400 undecodable or missing attribute, 404 unknown topic
(when ``topics`` restricts them), 413 too large, 415 unsupported content type,
422 schema violation. 503 with ``Retry-After`` when the broker is unavailable.
``GET /healthz`` answers ``{"status": "ok"}``.

Run it with uvicorn (``scorebus[http]``)::

    # ingest_main.py
    from scorebus.app.ingest import ingest_app
    from fraud_app import app as fraud
    app = ingest_app("sqlite:///.scorebus/bus.db", topics=fraud)

    $ uvicorn ingest_main:app --host 0.0.0.0 --port 8080

Reading the three modes off a request lives in :mod:`.ingest_decode`; this
module routes, limits bodies, and checks each event against its topic's rules.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any, NamedTuple

from ..brokers import Broker, open_broker
from ..errors import PermanentError, SchemaError, TooLargeError, TransientError
from ..events import Event, Schema
from ..events.schema import DEFAULT_MAX_BYTES
from .app import App
from .ingest_decode import BATCH as BATCH
from .ingest_decode import STRUCTURED as STRUCTURED
from .ingest_decode import Refusal as Refusal
from .ingest_decode import binary, is_json, json_of, structured

try:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the extra
    raise ImportError(
        f"HTTP ingest needs the {exc.name!r} package: pip install 'scorebus[http]'"
    ) from exc

log = logging.getLogger(__name__)

_TOPIC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,254}$")
TopicSchemas = Mapping[str, type[Any] | Schema[Any] | None]


class Rule(NamedTuple):
    """One check at the door: events of ``types`` (``None``: all) must fit ``schema``."""

    types: frozenset[str] | None
    schema: Schema[Any]


def rules_of(topics: TopicSchemas | App) -> dict[str, list[Rule]]:
    """The door checks per topic: from an ``App`` (its scorers' and handlers' schemas) or a map."""
    rules: dict[str, list[Rule]] = {}
    if isinstance(topics, App):
        for spec in topics.scorers:
            rules.setdefault(spec.topic, []).append(Rule(None, spec.schema))
        for handler in topics.handlers:
            rules.setdefault(handler.topic, []).append(Rule(handler.types, handler.schema))
        return rules
    for topic, schema in topics.items():
        rules[topic] = [Rule(None, schema if isinstance(schema, Schema) else Schema(schema))]
    return rules


def _field_of(error: SchemaError) -> str:
    # "$.amount: Expected `float`..." -> "data.amount"; the path is relative to data.
    path = str(error).split(":", 1)[0]
    return "data" + path[1:] if path.startswith("$") else "data"


class Ingest:
    """The request handlers; built by :func:`ingest_app`."""

    def __init__(
        self,
        broker: str | Broker,
        rules: dict[str, list[Rule]] | None,
        *,
        max_bytes: int,
        max_request_bytes: int,
        max_batch: int,
    ) -> None:
        self._url = broker if isinstance(broker, str) else None
        self.broker: Broker | None = None if isinstance(broker, str) else broker
        self.rules = rules
        self.max_bytes = max_bytes
        self.max_request_bytes = max_request_bytes
        self.max_batch = max_batch

    async def get_broker(self) -> Broker:
        if self.broker is None:
            assert self._url is not None
            self.broker = await open_broker(self._url).__aenter__()
        return self.broker

    @contextlib.asynccontextmanager
    async def lifespan(self, _: Starlette) -> AsyncIterator[None]:
        if self._url is not None:
            await self.get_broker()
        try:
            yield
        finally:
            if self._url is not None and self.broker is not None:
                await self.broker.close()
                self.broker = None

    async def healthz(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def post_events(self, request: Request) -> JSONResponse:
        topic = request.path_params["topic"]
        try:
            events = await self._events(request, topic)
            await (await self.get_broker()).publish(topic, events)
        except Refusal as r:
            log.info("ingest topic=%s refused %d field=%s: %s", topic, r.status, r.field, r.error)
            body = {"error": r.error, "field": r.field, "index": r.index}
            return JSONResponse(body, status_code=r.status)
        except TransientError as exc:
            log.warning("ingest topic=%s: broker unavailable: %s", topic, exc)
            retry = str(max(1, round(exc.retry_after_s or 1)))
            body = {"error": f"broker unavailable: {exc}", "field": None, "index": None}
            return JSONResponse(body, status_code=503, headers={"Retry-After": retry})
        return JSONResponse({"ids": [e.id for e in events]}, status_code=202)

    async def _events(self, request: Request, topic: str) -> list[Event]:
        if self.rules is not None and topic not in self.rules:
            known = ", ".join(sorted(self.rules)) or "none"
            raise Refusal(404, f"unknown topic {topic!r}: this endpoint takes {known}", "topic")
        if not _TOPIC.match(topic):
            raise Refusal(400, f"topic {topic!r}: use 3-255 of A-Z a-z 0-9 . _ -", "topic")
        content_type = request.headers.get("content-type", "")
        media = content_type.split(";")[0].strip().lower()
        is_binary = any(k.startswith("ce-") for k in request.headers)
        if media == STRUCTURED:
            events = [structured(json_of(await self._body(request), None), None)]
        elif media == BATCH:
            items = json_of(await self._body(request), None)
            if not isinstance(items, list):
                raise Refusal(400, "a batch must be a JSON array of CloudEvents")
            if len(items) > self.max_batch:
                raise Refusal(413, f"batch of {len(items)} events is over {self.max_batch}")
            events = [structured(obj, i) for i, obj in enumerate(items)]
        elif media.startswith("application/cloudevents") or not (is_binary or is_json(media)):
            raise Refusal(
                415,
                f"unsupported content type {content_type!r}: send {STRUCTURED}, {BATCH},"
                " or binary mode (ce-* headers)",
            )
        elif not is_binary:
            raise Refusal(
                400,
                "not a CloudEvent: binary mode needs the ce-specversion, ce-id, ce-source and"
                f" ce-type headers; or send Content-Type: {STRUCTURED}",
                "specversion",
            )
        else:
            events = [binary(request.headers, await self._body(request, self.max_bytes))]
        batch = len(events) > 1 or media == BATCH
        for i, event in enumerate(events):
            self._check(topic, event, i if batch else None)
        return events

    async def _body(self, request: Request, limit: int | None = None) -> bytes:
        limit = limit or self.max_request_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise Refusal(413, f"body of {declared} bytes is over the limit of {limit}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Refusal(413, f"body is over the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _check(self, topic: str, event: Event, index: int | None) -> None:
        """Size, then JSON, then each applicable schema, as the scorers will check it."""
        data: bytes = event.data
        if len(data) > self.max_bytes:
            raise Refusal(
                413,
                f"data of {len(data)} bytes is over the limit of {self.max_bytes}",
                "data",
                index,
            )
        rules = [
            r for r in (self.rules or {}).get(topic, []) if r.types is None or event.type in r.types
        ]
        if not is_json(event.datacontenttype):
            if any(r.schema.type is not None for r in rules):
                raise Refusal(
                    415,
                    f"topic {topic!r} takes JSON data; datacontenttype is {event.datacontenttype!r}",
                    "datacontenttype",
                    index,
                )
            return
        try:
            for rule in rules or [Rule(None, Schema(None, max_bytes=self.max_bytes))]:
                rule.schema.decode(data)
        except TooLargeError as exc:
            raise Refusal(413, str(exc), "data", index) from exc
        except SchemaError as exc:
            raise Refusal(422, str(exc), _field_of(exc), index) from exc
        except PermanentError as exc:
            raise Refusal(400, str(exc), "data", index) from exc


def ingest_app(
    broker: str | Broker,
    *,
    topics: TopicSchemas | App | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_request_bytes: int = 10 << 20,
    max_batch: int = 1000,
) -> Starlette:
    """A Starlette (ASGI) app that takes CloudEvents over HTTP and publishes them.

    Args:
        broker: a broker URL (opened at startup, closed at shutdown) or an open
            broker (left open: the caller owns it).
        topics: the topics this endpoint takes and their data schemas: a map
            ``{topic: schema type | Schema | None}`` or an ``App`` (its scorers'
            and handlers' topics and schemas). ``None`` takes any topic, unchecked.
        max_bytes: the largest event data (413 above it).
        max_request_bytes: the largest structured or batch request body.
        max_batch: the most events in one batch request.

    Returns:
        The ASGI app; serve it with ``uvicorn module:app``.

    Example::

        app = ingest_app("sqlite:///.scorebus/bus.db", topics={"transactions": Transaction})
    """
    ingest = Ingest(
        broker,
        None if topics is None else rules_of(topics),
        max_bytes=max_bytes,
        max_request_bytes=max_request_bytes,
        max_batch=max_batch,
    )
    routes = [
        Route("/topics/{topic}/events", ingest.post_events, methods=["POST"]),
        Route("/healthz", ingest.healthz, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=ingest.lifespan)
    app.state.ingest = ingest
    return app
