"""Events <-> AMQP messages, and dead letters read back from a dead-letter queue.

CloudEvents binary mode: the attributes travel as ``ce-*`` headers, the data as
the body, ``content_type`` carries ``datacontenttype`` and ``message_id`` the
event id. scorebus's own bookkeeping rides in ``x-scorebus-*`` headers.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiormq import spec

from ...errors import DecodeError
from ...events import Event
from ...events.binding import PREFIX, from_headers, to_headers
from ..base import DeadLetter

PERSISTENT = 2
# Deliveries that happened before this copy of the message existed: a nack with a
# delay republishes the message, and RabbitMQ's x-delivery-count starts again at 0.
ATTEMPTS = "x-scorebus-attempts"
DL_ID = "x-scorebus-dlid"
DL_REASON = "x-scorebus-reason"
DL_ERROR = "x-scorebus-error"
DL_AT = "x-scorebus-dead-at"
DL_TOPIC = "x-scorebus-topic"
REPLAYED_AT = "x-scorebus-replayed-at"


def properties(event: Event) -> spec.Basic.Properties:
    """AMQP properties of a freshly published event."""
    headers: dict[str, Any] = to_headers(event)
    content_type = headers.pop("content-type")
    return spec.Basic.Properties(
        content_type=content_type,
        headers=headers,
        message_id=event.id,
        delivery_mode=PERSISTENT,
    )


def copy_properties(
    headers: Mapping[str, Any] | None,
    content_type: str | None,
    message_id: str | None,
    extra: Mapping[str, Any] | None = None,
) -> spec.Basic.Properties:
    """Properties for a new copy of a delivered message: its ``ce-*`` headers and
    ``extra``, never the broker's (``x-death``, ``x-delivery-count``)."""
    copied: dict[str, Any] = {
        k: v for k, v in (headers or {}).items() if k.lower().startswith(PREFIX)
    }
    if extra:
        copied.update(extra)
    return spec.Basic.Properties(
        content_type=content_type,
        headers=copied,
        message_id=message_id,
        delivery_mode=PERSISTENT,
    )


def copy_of(
    props: spec.Basic.Properties, extra: Mapping[str, Any] | None = None
) -> spec.Basic.Properties:
    """:func:`copy_properties` of a message got with basic.get."""
    return copy_properties(props.headers, props.content_type, props.message_id, extra)


def attempt_of(headers: Mapping[str, Any] | None) -> int:
    """1 on the first delivery; quorum queues count redeliveries in x-delivery-count."""
    if not headers:
        return 1
    return int(headers.get(ATTEMPTS, 0)) + int(headers.get("x-delivery-count", 0)) + 1


def event_of(
    headers: Mapping[str, Any] | None,
    content_type: str | None,
    message_id: str | None,
    body: bytes,
    *,
    source: str,
) -> Event:
    """The event a message carries. A message from a plain AMQP producer (no
    ``ce-*`` headers) becomes an ``amqp.message`` event keyed by its message id."""
    strings = {
        k: v.decode("utf-8", "replace") if isinstance(v, bytes | bytearray) else v
        for k, v in (headers or {}).items()
        if isinstance(v, str | bytes | bytearray)
    }
    if content_type:
        strings["content-type"] = content_type
    try:
        return from_headers(strings, body)
    except DecodeError:
        return Event(
            id=message_id or uuid.uuid4().hex,
            type="amqp.message",
            source=source,
            time=time.time(),
            data=body,
            datacontenttype=content_type or "application/octet-stream",
        )


def dead_letter_headers(attempts: int, reason: str, error: str, topic: str) -> dict[str, Any]:
    """The ``x-scorebus-*`` headers of a message written to a dead-letter queue."""
    return {
        # A random 52-bit id: an exact float in JSON, and unique without a counter
        # shared between worker processes.
        DL_ID: secrets.randbits(52),
        DL_REASON: reason,
        DL_ERROR: error[:4000],
        ATTEMPTS: attempts,
        DL_AT: time.time(),
        DL_TOPIC: topic,
    }


def dead_letter_of(
    props: spec.Basic.Properties,
    body: bytes,
    *,
    subscription: str,
    topic: str,
    delivery_limit: int,
) -> DeadLetter:
    """A message of a dead-letter queue as a :class:`DeadLetter`.

    Letters scorebus wrote carry their reason in headers; letters RabbitMQ moved
    itself (x-delivery-limit reached) are described from their ``x-death`` entry.
    """
    headers: dict[str, Any] = dict(props.headers or {})
    event = event_of(headers, props.content_type, props.message_id, body, source=subscription)
    attrs = {k[len(PREFIX) :]: str(v) for k, v in headers.items() if k.startswith(PREFIX)}
    if props.content_type:
        attrs["datacontenttype"] = props.content_type
    replayed = headers.get(REPLAYED_AT)
    prior = int(headers.get(ATTEMPTS, 0))
    if DL_ID in headers:
        dl_id = int(headers[DL_ID])
        topic = str(headers.get(DL_TOPIC) or topic)
        reason = str(headers.get(DL_REASON, ""))
        error = str(headers.get(DL_ERROR, ""))
        attempts = prior
        dead_at = float(headers.get(DL_AT, 0.0))
    else:
        death = _last_death(headers)
        reason = str(death.get("reason", "unknown"))
        when = death.get("time")
        dead_at = when.timestamp() if isinstance(when, datetime) else time.time()
        key = f"{props.message_id}|{dead_at}|{death.get('queue')}".encode()
        # Stable across listings, so `scorebus dlq show ID` and replay find it again.
        dl_id = int.from_bytes(hashlib.blake2b(key, digest_size=6).digest(), "big")
        if reason == "delivery_limit":
            error = f"RabbitMQ dead-lettered it: x-delivery-limit={delivery_limit} reached"
            attempts = prior + delivery_limit + 1
        else:
            error = f"RabbitMQ dead-lettered it: {reason}"
            attempts = prior + int(headers.get("x-delivery-count", 0)) + 1
    return DeadLetter(
        id=dl_id,
        subscription=subscription,
        topic=topic,
        event_id=event.id,
        event_type=event.type,
        reason=reason,
        error=error,
        attempts=attempts,
        dead_at=dead_at,
        payload=bytes(body),
        attributes=attrs,
        replayed_at=float(replayed) if replayed is not None else None,
    )


def _last_death(headers: Mapping[str, Any]) -> Mapping[str, Any]:
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], Mapping):
        return deaths[0]  # RabbitMQ puts the most recent death first
    return {}
