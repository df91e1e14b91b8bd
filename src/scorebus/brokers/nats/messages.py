"""Events to NATS messages and back: CloudEvents binary mode over headers.

A message that carries no ``ce-id`` header comes from a producer that does not
speak CloudEvents binary mode: a structured-mode JSON CloudEvent body is read as
such, anything else becomes an event of type ``nats.message`` whose id is the
message's ``Nats-Msg-Id`` (or its stream sequence), so the scorer's schema still
decides whether it is valid.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import msgspec

from ...errors import DecodeError
from ...events import Event, encode_data
from ...events.binding import from_headers, to_headers
from ...events.codec import decode_json, from_structured, is_structured

MSG_ID = "Nats-Msg-Id"
# Set by replay: only the named subscription takes the message, its siblings on
# the topic ack it unseen (a replay must not re-run every subscriber's handler).
REPLAY_FOR = "Scorebus-Replay-For"
FOREIGN_TYPE = "nats.message"


def encode(
    event: Event, msg_id: str, extra: Mapping[str, str] | None = None
) -> tuple[dict[str, str], bytes]:
    """Headers and body for ``event``; ``msg_id`` is JetStream's dedupe key."""
    if not event.time:
        event = msgspec.structs.replace(event, time=time.time())
    headers = to_headers(event)
    headers[MSG_ID] = msg_id
    if extra:
        headers.update(extra)
    return headers, encode_data(event.data)


def decode(
    headers: Mapping[str, str] | None, body: bytes, *, fallback_id: str, stored_at: float
) -> Event:
    """The event a message carries (see the module docstring for foreign messages).

    Args:
        headers: the message headers.
        body: the message body.
        fallback_id: the id of a foreign message without ``Nats-Msg-Id``.
        stored_at: when JetStream stored the message (a foreign event's time).
    """
    headers = headers or {}
    if "ce-id" in headers:
        try:
            return from_headers(headers, body)
        except DecodeError:
            pass
    try:
        obj = decode_json(body)
        if is_structured(obj):
            event = from_structured(obj)
            return event.with_data(encode_data(event.data))
    except DecodeError:
        pass
    return Event(
        id=headers.get(MSG_ID) or fallback_id,
        type=FOREIGN_TYPE,
        source="nats",
        time=stored_at,
        data=body,
        datacontenttype=headers.get("content-type") or "application/json",
    )
