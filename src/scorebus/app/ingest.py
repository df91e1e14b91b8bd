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
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any, NamedTuple
from urllib.parse import unquote

from ..brokers import Broker, open_broker
from ..errors import DecodeError, PermanentError, SchemaError, TooLargeError, TransientError
from ..events import Event, Schema, encode_data, from_structured
from ..events.codec import decode_json, parse_time
from ..events.schema import DEFAULT_MAX_BYTES
from .app import App

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

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
_TOPIC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,254}$")
_EXTENSION = re.compile(r"^[a-z0-9]{1,20}$")
_REQUIRED = ("specversion", "id", "source", "type")
_NOT_EXTENSIONS = frozenset({*_REQUIRED, "time", "subject", "datacontenttype"})
_CORE = frozenset({*_NOT_EXTENSIONS, "dataschema", "data", "data_base64"})
TopicSchemas = Mapping[str, type[Any] | Schema[Any] | None]


class Rule(NamedTuple):
    """One check at the door: events of ``types`` (``None``: all) must fit ``schema``."""

    types: frozenset[str] | None
    schema: Schema[Any]


class Refusal(Exception):
    """A request refused with an HTTP status and the offending field."""

    def __init__(
        self, status: int, error: str, field: str | None = None, index: int | None = None
    ) -> None:
        super().__init__(error)
        self.status, self.error, self.field, self.index = status, error, field, index


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


def _is_json(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media in ("application/json", "text/json") or media.endswith("+json")


def _field_of(error: SchemaError) -> str:
    # "$.amount: Expected `float`..." -> "data.amount"; the path is relative to data.
    path = str(error).split(":", 1)[0]
    return "data" + path[1:] if path.startswith("$") else "data"


def _structured(obj: Any, index: int | None) -> Event:
    """The event of one structured-mode object, data encoded to bytes."""
    if not isinstance(obj, dict):
        raise Refusal(400, "not a CloudEvent: expected a JSON object", None, index)
    # In the JSON format an attribute whose value is null is absent.
    obj = {k: v for k, v in obj.items() if v is not None}
    for name in _REQUIRED:
        if not isinstance(obj.get(name), str) or not obj[name]:
            raise Refusal(400, f"attribute {name!r}: required non-empty string", name, index)
    if obj["specversion"] != "1.0":
        raise Refusal(400, "attribute 'specversion': expected '1.0'", "specversion", index)
    for name, value in obj.items():
        if name in ("data", "data_base64", "time"):
            continue
        if not _EXTENSION.match(name):
            raise Refusal(400, f"attribute {name!r}: names are 1-20 of a-z, 0-9", name, index)
        if isinstance(value, bool):
            obj[name] = "true" if value else "false"
        elif not isinstance(value, str) and not (isinstance(value, int) and name not in _CORE):
            raise Refusal(400, f"attribute {name!r}: expected a string", name, index)
    try:
        event = from_structured(obj)
    except DecodeError as exc:
        raise Refusal(400, str(exc), "time", index) from exc
    if "data_base64" in obj:
        if "data" in obj:
            raise Refusal(400, "both 'data' and 'data_base64' given", "data_base64", index)
        try:
            return event.with_data(base64.b64decode(obj["data_base64"], validate=True))
        except (binascii.Error, TypeError) as exc:
            raise Refusal(400, f"attribute 'data_base64': {exc}", "data_base64", index) from exc
    data = event.data
    if isinstance(data, str) and not _is_json(event.datacontenttype):
        return event.with_data(data.encode())
    return event.with_data(encode_data(data))


def _binary(headers: Mapping[str, str], body: bytes) -> Event:
    # Header values are percent-encoded by the CloudEvents HTTP binding.
    attrs = {k.lower(): unquote(v) for k, v in headers.items() if k.lower().startswith("ce-")}
    for name in _REQUIRED:
        if not attrs.get(f"ce-{name}"):
            raise Refusal(400, f"header 'ce-{name}' missing: not a CloudEvent", name)
    if attrs["ce-specversion"] != "1.0":
        raise Refusal(400, "header 'ce-specversion': expected '1.0'", "specversion")
    for key in attrs:
        if key[3:] not in _REQUIRED and not _EXTENSION.match(key[3:]):
            raise Refusal(400, f"header {key!r}: names are 1-20 of a-z, 0-9", key[3:])
    if attrs.get("ce-time"):
        try:
            parse_time(attrs["ce-time"])
        except DecodeError as exc:
            raise Refusal(400, str(exc), "time") from exc
    content_type = headers.get("content-type") or "application/json"
    return Event(
        id=attrs["ce-id"],
        type=attrs["ce-type"],
        source=attrs["ce-source"],
        time=parse_time(attrs["ce-time"]) if attrs.get("ce-time") else 0.0,
        data=body,
        datacontenttype=content_type,
        subject=attrs.get("ce-subject"),
        extensions={k[3:]: v for k, v in attrs.items() if k[3:] not in _NOT_EXTENSIONS},
    )


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
        binary = any(k.startswith("ce-") for k in request.headers)
        if media == STRUCTURED:
            events = [_structured(self._json(await self._body(request), None), None)]
        elif media == BATCH:
            items = self._json(await self._body(request), None)
            if not isinstance(items, list):
                raise Refusal(400, "a batch must be a JSON array of CloudEvents")
            if len(items) > self.max_batch:
                raise Refusal(413, f"batch of {len(items)} events is over {self.max_batch}")
            events = [_structured(obj, i) for i, obj in enumerate(items)]
        elif media.startswith("application/cloudevents") or not (binary or _is_json(media)):
            raise Refusal(
                415,
                f"unsupported content type {content_type!r}: send {STRUCTURED}, {BATCH},"
                " or binary mode (ce-* headers)",
            )
        elif not binary:
            raise Refusal(
                400,
                "not a CloudEvent: binary mode needs the ce-specversion, ce-id, ce-source and"
                f" ce-type headers; or send Content-Type: {STRUCTURED}",
                "specversion",
            )
        else:
            events = [_binary(request.headers, await self._body(request, self.max_bytes))]
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

    @staticmethod
    def _json(raw: bytes, index: int | None) -> Any:
        try:
            return decode_json(raw)
        except DecodeError as exc:
            raise Refusal(400, str(exc), None, index) from exc

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
        if not _is_json(event.datacontenttype):
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
