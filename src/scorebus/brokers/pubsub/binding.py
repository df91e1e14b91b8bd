"""Pub/Sub messages <-> CloudEvents, per the CloudEvents Pub/Sub protocol binding.

Publishing uses *binary* content mode: the event's data is the message data,
every attribute is a ``ce-<name>`` message attribute, and ``datacontenttype``
is the ``content-type`` attribute (the binding's ``Content-Type``; Pub/Sub
attribute names are case-sensitive, so both spellings are read).

Receiving accepts three shapes:

- binary mode (``ce-id`` and ``ce-type`` present): as above;
- *structured* mode (``content-type: application/cloudevents+json``): the
  message data is a JSON CloudEvent (``data`` or ``data_base64``);
- a plain message from any other publisher (``gcloud pubsub topics publish``, a
  Cloud Storage notification): the event id is the Pub/Sub message id, the type
  ``google.cloud.pubsub.topic.v1.messagePublished``, the time its publish time, and
  attributes whose names are valid CloudEvents extension names (lower-cased)
  become extensions. Such a publisher's retry has a new message id, so its
  duplicates are not recognised as one event.

``scorebus-*`` attributes are scorebus's own routing marks, never part of the event.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

from ...errors import DecodeError
from ...events import Event, encode_data, from_structured
from ...events.binding import from_headers, to_headers
from ...events.codec import decode_json, format_time, parse_time
from .rpc import PubsubMessage

STRUCTURED = "application/cloudevents+json"
PLAIN_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"
# Only the subscription named here may take the message (replay, adoption of
# unclaimed messages); any other subscription of the topic acks and drops it.
FOR = "scorebus-for"
REASON, ERROR, ATTEMPTS, ORIGIN = (
    "scorebus-reason",
    "scorebus-error",
    "scorebus-attempts",
    "scorebus-subscription",
)
_EXTENSION = re.compile(r"^[a-z0-9]{1,20}$")
_MAX_VALUE_BYTES = 1024  # Pub/Sub's limit on one attribute value


Sized = tuple[Any, int]  # a PubsubMessage and the bytes Pub/Sub counts for it


def build(data: bytes, attributes: dict[str, str], ordering_key: str = "") -> Sized:
    """A ``PubsubMessage`` and its size against Pub/Sub's 10 MB limit.

    The size is taken from the Python values: iterating the protobuf's attribute
    map afterwards costs more than building the message.
    """
    size = len(data) + len(ordering_key.encode())
    size += sum(len(k) + len(v.encode()) for k, v in attributes.items())
    return PubsubMessage(data=data, attributes=attributes, ordering_key=ordering_key), size


def to_message(event: Event, *, ordering: bool = False, extra: Mapping[str, str] = {}) -> Sized:
    """The binary-mode message for ``event`` (``extra``: more attributes), with its size."""
    attributes = to_headers(event)
    attributes.update(extra)
    return build(encode_data(event.data), attributes, (event.subject or "") if ordering else "")


def from_message(message: Any, attrs: Mapping[str, str], topic_path: str) -> Event:
    """The event carried by a received ``PubsubMessage`` (``attrs``: its attributes
    as a dict); data stays bytes.

    Raises:
        DecodeError: a structured-mode body that is not a CloudEvent, or binary
            mode with a bad attribute.
    """
    ctype = attrs.get("content-type") or attrs.get("Content-Type") or ""
    if ctype.startswith(STRUCTURED):
        return _structured(bytes(message.data))
    if "ce-id" in attrs or "ce-type" in attrs:
        headers = attrs
        if ctype and attrs.get("content-type") != ctype:
            headers = {**attrs, "content-type": ctype}
        return from_headers(headers, bytes(message.data))
    return _plain(message, attrs, topic_path)


def _structured(body: bytes) -> Event:
    obj = decode_json(body)
    if not isinstance(obj, dict):
        raise DecodeError("structured CloudEvent: the message data is not a JSON object")
    event = from_structured(obj)
    if "data_base64" in obj:
        try:
            return event.with_data(base64.b64decode(obj["data_base64"], validate=True))
        except (ValueError, TypeError) as exc:
            raise DecodeError(f"attribute 'data_base64': not base64: {exc}") from exc
    return event.with_data(b"" if event.data is None else encode_data(event.data))


def _plain(message: Any, attrs: Mapping[str, str], topic_path: str) -> Event:
    published = message.publish_time
    extensions = {
        k.lower(): v
        for k, v in attrs.items()
        if _EXTENSION.match(k.lower()) and not k.startswith("scorebus-")
    }
    return Event(
        id=message.message_id,
        type=PLAIN_TYPE,
        source=f"//pubsub.googleapis.com/{topic_path}",
        time=published.seconds + published.nanos / 1e9,
        data=bytes(message.data),
        datacontenttype="application/octet-stream",
        extensions=extensions,
    )


def dead_letter_attributes(
    event: Event, reason: str, error: str, attempts: int, subscription: str
) -> dict[str, str]:
    """Attributes of a dead letter on ``<subscription>.dead-letter``: the event's own plus why."""
    attributes = to_headers(event)
    attributes.update(
        {
            REASON: _clip(reason),
            ERROR: _clip(error),
            ATTEMPTS: str(attempts),
            ORIGIN: subscription,
        }
    )
    return attributes


def event_from_letter(attributes: Mapping[str, str], payload: bytes) -> Event:
    """Rebuild a dead letter's event from the attributes the store kept (see the broker)."""
    core = {"id", "type", "source", "time", "datacontenttype", "subject"}
    return Event(
        id=attributes["id"],
        type=attributes["type"],
        source=attributes.get("source") or "unknown",
        time=parse_time(attributes["time"]) if attributes.get("time") else 0.0,
        data=payload,
        datacontenttype=attributes.get("datacontenttype") or "application/json",
        subject=attributes.get("subject"),
        extensions={k: v for k, v in attributes.items() if k not in core},
    )


def letter_extensions(event: Event) -> dict[str, str]:
    """Extensions plus ``time`` and ``datacontenttype``, so a replay restores them."""
    return {
        **event.extensions,
        "time": format_time(event.time),
        "datacontenttype": event.datacontenttype,
    }


def _clip(value: str) -> str:
    raw = value.encode()
    if len(raw) <= _MAX_VALUE_BYTES:
        return value
    return raw[: _MAX_VALUE_BYTES - 3].decode(errors="ignore") + "..."
