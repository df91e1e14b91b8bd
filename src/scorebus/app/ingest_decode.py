"""CloudEvents read off an HTTP request: binary, structured and batch mode.

Apart from :mod:`.ingest` because decoding the CloudEvents HTTP binding is its
own set of rules (required attributes, extension names, ``data`` versus
``data_base64``, percent-encoded ``ce-*`` headers) and needs no web framework:
these functions take plain headers, bytes and JSON values and give events, or
a :class:`Refusal` naming the offending attribute. What a topic accepts (its
schemas and size limits) is checked afterwards, in :mod:`.ingest`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from ..errors import DecodeError
from ..events import Event, encode_data, from_structured
from ..events.codec import decode_json, parse_time

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
_EXTENSION = re.compile(r"^[a-z0-9]{1,20}$")
_REQUIRED = ("specversion", "id", "source", "type")
_NOT_EXTENSIONS = frozenset({*_REQUIRED, "time", "subject", "datacontenttype"})
_CORE = frozenset({*_NOT_EXTENSIONS, "dataschema", "data", "data_base64"})


class Refusal(Exception):
    """A request refused with an HTTP status and the offending field."""

    def __init__(
        self, status: int, error: str, field: str | None = None, index: int | None = None
    ) -> None:
        super().__init__(error)
        self.status, self.error, self.field, self.index = status, error, field, index


def is_json(content_type: str) -> bool:
    """Whether a content type is JSON (``application/json``, ``text/json``, ``*+json``)."""
    media = content_type.split(";")[0].strip().lower()
    return media in ("application/json", "text/json") or media.endswith("+json")


def json_of(raw: bytes, index: int | None) -> Any:
    """A request body's JSON value; a 400 Refusal when it is not JSON."""
    try:
        return decode_json(raw)
    except DecodeError as exc:
        raise Refusal(400, str(exc), None, index) from exc


def structured(obj: Any, index: int | None) -> Event:
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
    if isinstance(data, str) and not is_json(event.datacontenttype):
        return event.with_data(data.encode())
    return event.with_data(encode_data(data))


def binary(headers: Mapping[str, str], body: bytes) -> Event:
    """The event of a binary-mode request: attributes in ``ce-*`` headers, data the body."""
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
