"""Pub/Sub messages as they arrive by push, and Cloud Storage notifications.

A push body is ``{"message": {"data": base64, "attributes": {...}, "messageId":
..., "publishTime": ...}, "subscription": ..., "deliveryAttempt": n}``;
functions-framework turns the same body into a CloudEvent of type
``google.cloud.pubsub.topic.v1.messagePublished`` whose ``data`` is that body.

The event inside follows the CloudEvents Pub/Sub binding: in binary mode the
attributes are ``ce-*`` message attributes and the body is the data. A message
without ``ce-id`` (a plain publisher) is keyed by its Pub/Sub ``messageId`` —
which a publisher's retry changes, so such producers lose the duplicate
protection; publish with ``ce-id`` to keep it.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import msgspec

from ..errors import DecodeError
from ..events import Event, decode_json, from_structured
from ..events.binding import from_headers
from ..events.codec import parse_time

PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
STRUCTURED = "application/cloudevents+json"


class PushMessage(msgspec.Struct, kw_only=True):
    data: str = ""
    attributes: dict[str, str] = msgspec.field(default_factory=dict)
    messageId: str = ""
    publishTime: str | None = None


class PushBody(msgspec.Struct, kw_only=True):
    message: PushMessage
    subscription: str = ""
    deliveryAttempt: int | None = None


_body = msgspec.json.Decoder(PushBody)


def parse_push(raw: bytes | dict[str, Any]) -> PushBody:
    """Validate a push body (bytes, or the dict functions-framework hands over).

    Raises:
        DecodeError: not a Pub/Sub push body; the message names the field.
    """
    try:
        if isinstance(raw, dict):
            return msgspec.convert(raw, PushBody)
        return _body.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise DecodeError(f"not a Pub/Sub push body: {exc}") from exc


def to_event(body: PushBody, *, topic: str = "") -> Event:
    """The CloudEvent carried by a pushed message.

    Raises:
        DecodeError: the data is not base64, or a structured event is malformed.
    """
    msg = body.message
    try:
        data = base64.b64decode(msg.data, validate=True) if msg.data else b""
    except (binascii.Error, ValueError) as exc:
        raise DecodeError(f"message {msg.messageId}: data is not base64: {exc}") from exc
    attrs = msg.attributes
    if attrs.get("content-type", "").startswith(STRUCTURED):
        event = from_structured(decode_json(data))
        return event.with_data(msgspec.json.encode(event.data))
    if "ce-id" in attrs:
        return from_headers(attrs, data)
    if not msg.messageId:
        raise DecodeError("message has neither a 'ce-id' attribute nor a messageId")
    return Event(
        id=msg.messageId,
        type=attrs.get("ce-type") or f"{PUBLISHED}",
        source=f"//pubsub.googleapis.com/{body.subscription or topic}",
        time=parse_time(msg.publishTime) if msg.publishTime else 0.0,
        data=data,
        # Attributes become extensions, lower-cased as CloudEvents requires (so a
        # Cloud Storage notification's eventType/bucketId/objectId survive), the
        # same mapping the pull broker applies.
        extensions={k.lower(): v for k, v in attrs.items() if k.isalnum()},
    )
