"""CloudEvents binary mode over message headers/attributes.

Brokers with headers (NATS, RabbitMQ, Redis stream fields, MQTT 5 user
properties, Pub/Sub attributes) carry the attributes as ``ce-<name>`` headers
and the data as the body, so only the body is decoded on the hot path.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import DecodeError
from .codec import format_time, parse_time
from .envelope import SPECVERSION, Event

PREFIX = "ce-"


def to_headers(event: Event) -> dict[str, str]:
    """Attributes of ``event`` as ``ce-*`` headers (binary content mode)."""
    headers = {
        "ce-specversion": SPECVERSION,
        "ce-id": event.id,
        "ce-type": event.type,
        "ce-source": event.source,
        "ce-time": format_time(event.time),
        "content-type": event.datacontenttype,
    }
    if event.subject is not None:
        headers["ce-subject"] = event.subject
    for key, value in event.extensions.items():
        headers[PREFIX + key] = value
    return headers


def from_headers(headers: Mapping[str, str], body: bytes) -> Event:
    """The event carried by ``ce-*`` headers and a body.

    Raises:
        DecodeError: ``ce-id`` or ``ce-type`` is missing.
    """
    attrs = {k[len(PREFIX) :]: v for k, v in headers.items() if k.lower().startswith(PREFIX)}
    for key in ("id", "type"):
        if not attrs.get(key):
            raise DecodeError(f"header 'ce-{key}' missing: not a CloudEvent in binary mode")
    core = {"specversion", "id", "type", "source", "time", "subject", "datacontenttype"}
    return Event(
        id=attrs["id"],
        type=attrs["type"],
        source=attrs.get("source") or "unknown",
        time=parse_time(attrs["time"]) if attrs.get("time") else 0.0,
        data=body,
        datacontenttype=headers.get("content-type")
        or attrs.get("datacontenttype")
        or "application/json",
        subject=attrs.get("subject"),
        extensions={k: v for k, v in attrs.items() if k not in core},
    )
