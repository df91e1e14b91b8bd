"""Events on the wire: CloudEvents over MQTT 5 user properties or 3.1.1 JSON.

MQTT 5 carries the attributes as ``ce-*`` user properties and the data as the
payload (binary content mode, :mod:`scorebus.events.binding`), with the content
type in MQTT's own Content Type property. MQTT 3.1.1 has no properties, so the
whole event travels as one CloudEvents structured-mode JSON object; its data is
spliced in verbatim, or as ``data_base64`` where it is not JSON.

Two scorebus-only fields ride along: ``sb-attempts`` (deliveries before this
copy, set when a copy is republished after a nack or hand-off) and
``sb-topic`` (the topic the event was first published to). In 3.1.1 they are
the keys ``sbattempts`` and ``sbtopic`` of the JSON object.

A payload that is no CloudEvent (a device publishing bare JSON) is accepted
as one: its id is derived from the MQTT topic, the publisher's ``id`` user
property where there is one, and a hash of the payload, so a redelivery of the
same message keeps its id. Two identical payloads on one topic without an
``id`` property get the same id, and the idempotent sink keeps one result.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from paho.mqtt.client import MQTTMessage
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ...errors import DecodeError
from ...events import Event, encode_data
from ...events.binding import from_headers, to_headers
from ...events.codec import format_time, parse_time
from ._options import MqttOptions

ATTEMPTS, ORIGIN = "sb-attempts", "sb-topic"
_S_ATTEMPTS, _S_ORIGIN = "sbattempts", "sbtopic"
_CORE = {"specversion", "id", "type", "source", "time", "subject", "datacontenttype"}
_SKIP = {*_CORE, "data", "data_base64", "dataschema", _S_ATTEMPTS, _S_ORIGIN}
_enc = msgspec.json.Encoder()
_raw_fields = msgspec.json.Decoder(dict[str, msgspec.Raw])
_any = msgspec.json.Decoder()


@dataclass(slots=True)
class Outgoing:
    """One MQTT publish (QoS 1)."""

    topic: str
    payload: bytes
    properties: Properties | None = None
    retain: bool = False


@dataclass(slots=True)
class Incoming:
    """A received event: how many deliveries it had before, and where it was published."""

    event: Event
    attempts: int
    origin: str


def prepared(events: Sequence[Event]) -> list[Event]:
    """Events as they travel: data encoded to bytes, time set."""
    now = time.time()
    return [
        msgspec.structs.replace(e, data=encode_data(e.data), time=e.time or now) for e in events
    ]


def encode(event: Event, *, v5: bool, attempts: int = 0, origin: str | None = None) -> Outgoing:
    """``event`` as a payload (+ properties); the caller sets the topic."""
    data = encode_data(event.data)
    if not event.time:
        event = msgspec.structs.replace(event, time=time.time())
    if v5:
        headers = to_headers(event)
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ContentType = headers.pop("content-type")
        pairs = list(headers.items())
        if attempts:
            pairs.append((ATTEMPTS, str(attempts)))
        if origin is not None:
            pairs.append((ORIGIN, origin))
        props.UserProperty = pairs
        return Outgoing("", data, props)
    head: dict[str, Any] = {
        "specversion": "1.0",
        "id": event.id,
        "type": event.type,
        "source": event.source,
        "time": format_time(event.time),
        "datacontenttype": event.datacontenttype,
    }
    if event.subject is not None:
        head["subject"] = event.subject
    head.update(event.extensions)
    if attempts:
        head[_S_ATTEMPTS] = attempts
    if origin is not None:
        head[_S_ORIGIN] = origin
    if _is_json(data):
        return Outgoing("", _enc.encode(head)[:-1] + b',"data":' + data + b"}")
    head["data_base64"] = base64.b64encode(data).decode()
    return Outgoing("", _enc.encode(head))


def from_message(opts: MqttOptions, msg: MQTTMessage) -> Incoming:
    """The event in a message received from a subscription's session."""
    topic = msg.topic
    if not topic.startswith(opts.base + "/"):
        topic = opts.scorebus_topic(topic)
    return decode(
        topic,
        bytes(msg.payload),
        getattr(msg, "properties", None),
        v5=opts.v5,
        where=opts.where + (f"/{opts.prefix}" if opts.prefix else ""),
        device_type=opts.device_type,
    )


def decode(
    topic: str, payload: bytes, props: Properties | None, *, v5: bool, where: str, device_type: str
) -> Incoming:
    """The event in a received message (a device payload becomes one, see the module doc)."""
    users = dict(getattr(props, "UserProperty", None) or ()) if v5 else {}
    ctype = getattr(props, "ContentType", None) if v5 else None
    if "ce-id" in users:
        headers = dict(users)
        if ctype:
            headers["content-type"] = ctype
        try:
            event = from_headers(headers, payload)
        except DecodeError:
            pass
        else:
            return Incoming(event, _int(users.get(ATTEMPTS)), users.get(ORIGIN) or topic)
    if payload[:1] == b"{" and b'"specversion"' in payload:
        found = _structured(payload, topic)
        if found is not None:
            return found
    digest = hashlib.sha256(f"{topic}\0{users.get('id', '')}\0".encode() + payload).hexdigest()
    event = Event(
        id=f"mqtt-{digest[:32]}",
        type=device_type,
        source=f"{where}/{topic}",
        time=time.time(),
        data=payload,
        datacontenttype=ctype or "application/json",
        subject=topic,
    )
    return Incoming(event, 0, topic)


def _structured(payload: bytes, topic: str) -> Incoming | None:
    try:
        raw = _raw_fields.decode(payload)
        obj = {k: _any.decode(v) for k, v in raw.items() if k not in ("data", "data_base64")}
        if not (isinstance(obj.get("id"), str) and isinstance(obj.get("type"), str)):
            return None
        if "data_base64" in raw:
            data = base64.b64decode(_any.decode(raw["data_base64"]))
        else:
            data = bytes(raw["data"]) if "data" in raw else b""
        event = Event(
            id=obj["id"],
            type=obj["type"],
            source=str(obj.get("source") or "unknown"),
            time=parse_time(obj["time"]) if obj.get("time") is not None else time.time(),
            data=data,
            datacontenttype=str(obj.get("datacontenttype") or "application/json"),
            subject=obj.get("subject"),
            extensions={k: str(v) for k, v in obj.items() if k not in _SKIP},
        )
    except (msgspec.DecodeError, DecodeError, ValueError, TypeError):
        return None
    return Incoming(event, _int(obj.get(_S_ATTEMPTS)), str(obj.get(_S_ORIGIN) or topic))


def _is_json(data: bytes) -> bool:
    try:
        _any.decode(data)
    except msgspec.DecodeError:
        return False
    return True


def _int(value: object) -> int:
    try:
        return max(0, int(str(value))) if value is not None else 0
    except ValueError:
        return 0
