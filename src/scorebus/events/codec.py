"""JSON codecs: event data, and whole envelopes in CloudEvents structured mode.

Brokers that carry attributes beside the body (the embedded broker, Pub/Sub,
NATS headers) use binary mode: attributes as metadata, ``data`` as the body, so
only the body is decoded on the hot path. Structured mode (one JSON object with
``specversion``, ``id``, ``type``, ..., ``data``) is what files, ``scorebus
publish`` and HTTP ingest accept.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from ..errors import DecodeError
from .envelope import SPECVERSION, Event

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()
_CORE = frozenset(
    {
        "specversion",
        "id",
        "type",
        "source",
        "time",
        "data",
        "datacontenttype",
        "subject",
        "data_base64",
        "dataschema",
    }
)


def encode_data(data: Any) -> bytes:
    """Encode a payload to JSON bytes (bytes pass through untouched)."""
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    return _encoder.encode(data)


def decode_json(raw: bytes | str) -> Any:
    """Decode JSON, raising :class:`DecodeError` with the position of the problem."""
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"not valid JSON: {exc}") from exc


def format_time(ts: float) -> str:
    """RFC 3339 in UTC, as CloudEvents wants it."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: Any) -> float:
    """Accept RFC 3339 strings or epoch seconds; DecodeError otherwise."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError as exc:
            raise DecodeError(f"attribute 'time': not RFC 3339: {value!r}") from exc
    raise DecodeError(f"attribute 'time': expected an RFC 3339 string, got {type(value).__name__}")


def to_structured(event: Event) -> dict[str, Any]:
    """The CloudEvents structured-mode JSON object for an event."""
    data = event.data
    if isinstance(data, bytes | bytearray):
        data = decode_json(bytes(data))
    out: dict[str, Any] = {
        "specversion": SPECVERSION,
        "id": event.id,
        "type": event.type,
        "source": event.source,
        "time": format_time(event.time),
        "datacontenttype": event.datacontenttype,
    }
    if event.subject is not None:
        out["subject"] = event.subject
    out.update(event.extensions)
    out["data"] = data
    return out


def encode_structured(event: Event) -> bytes:
    return _encoder.encode(to_structured(event))


def is_structured(obj: Any) -> bool:
    """True when a decoded JSON value looks like a structured-mode CloudEvent."""
    return isinstance(obj, dict) and "specversion" in obj and "id" in obj and "type" in obj


def from_structured(obj: dict[str, Any]) -> Event:
    """Build an :class:`Event` (data left decoded) from a structured-mode object.

    Raises:
        DecodeError: a required attribute is missing or has the wrong type.
    """
    for key in ("id", "type"):
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise DecodeError(f"attribute {key!r}: required non-empty string")
    if obj.get("specversion") != SPECVERSION:
        raise DecodeError(
            f"attribute 'specversion': expected '1.0', got {obj.get('specversion')!r}"
        )
    ext = {k: str(v) for k, v in obj.items() if k not in _CORE}
    return Event(
        id=obj["id"],
        type=obj["type"],
        source=str(obj.get("source") or "unknown"),
        time=parse_time(obj["time"]) if obj.get("time") is not None else 0.0,
        data=obj.get("data"),
        datacontenttype=str(obj.get("datacontenttype") or "application/json"),
        subject=obj.get("subject"),
        extensions=ext,
    )
