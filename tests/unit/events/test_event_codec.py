"""CloudEvents structured mode: round trips and the errors of a bad envelope."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import msgspec
import pytest

from scorebus.errors import DecodeError
from scorebus.events import (
    Event,
    decode_json,
    encode_data,
    encode_structured,
    from_structured,
    is_structured,
    to_structured,
)

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def _event() -> Event:
    cause = Event.new("order.created", {"id": 1})
    return Event.new(
        "order.scored",
        {"amount": 12.5, "tags": ["a", "b"]},
        source="tests/codec",
        subject="order-1",
        caused_by=cause,
        extensions={"tenant": "acme"},
    )


def test_structured_round_trip_keeps_every_attribute_and_extension() -> None:
    event = _event()

    obj = to_structured(event)
    back = from_structured(obj)

    assert obj["specversion"] == "1.0"
    assert back.id == event.id
    assert back.type == event.type
    assert back.source == "tests/codec"
    assert back.subject == "order-1"
    assert back.data == {"amount": 12.5, "tags": ["a", "b"]}
    assert back.extensions == event.extensions
    assert back.causation_id == event.causation_id
    assert back.hops == 1
    assert back.time == pytest.approx(event.time, abs=1e-6)


def test_structured_round_trip_through_json_bytes() -> None:
    event = _event()

    back = from_structured(msgspec.json.decode(encode_structured(event)))

    assert back.id == event.id
    assert back.data == event.data
    assert back.extensions == event.extensions


def test_structured_time_is_rfc3339_utc() -> None:
    event = Event(id="1", type="t", time=1_700_000_000.25)

    stamp = to_structured(event)["time"]

    assert RFC3339_UTC.match(stamp), stamp
    assert datetime.fromisoformat(stamp.replace("Z", "+00:00")) == datetime.fromtimestamp(
        1_700_000_000.25, UTC
    )


def test_encoded_data_is_decoded_in_structured_mode() -> None:
    event = Event(id="1", type="t", data=encode_data({"x": [1, 2]}))

    assert to_structured(event)["data"] == {"x": [1, 2]}


def test_from_structured_accepts_rfc3339_with_offset_and_epoch_seconds() -> None:
    base = {"specversion": "1.0", "id": "1", "type": "t"}

    with_offset = from_structured({**base, "time": "2024-01-01T02:00:00+02:00"})
    epoch = from_structured({**base, "time": 1_704_067_200})

    assert with_offset.time == 1_704_067_200.0
    assert epoch.time == 1_704_067_200.0


def test_from_structured_stringifies_extension_values() -> None:
    event = from_structured({"specversion": "1.0", "id": "1", "type": "t", "hops": 3})

    assert event.extensions == {"hops": "3"}
    assert event.hops == 3


@pytest.mark.parametrize(
    ("obj", "attribute"),
    [
        ({"specversion": "1.0", "type": "t"}, "'id'"),
        ({"specversion": "1.0", "id": "", "type": "t"}, "'id'"),
        ({"specversion": "1.0", "id": 7, "type": "t"}, "'id'"),
        ({"specversion": "1.0", "id": "1"}, "'type'"),
        ({"specversion": "0.3", "id": "1", "type": "t"}, "'specversion'"),
        ({"id": "1", "type": "t"}, "'specversion'"),
        ({"specversion": "1.0", "id": "1", "type": "t", "time": "yesterday"}, "'time'"),
        ({"specversion": "1.0", "id": "1", "type": "t", "time": True}, "'time'"),
        ({"specversion": "1.0", "id": "1", "type": "t", "time": [1]}, "'time'"),
    ],
)
def test_from_structured_errors_name_the_attribute(obj: dict[str, object], attribute: str) -> None:
    with pytest.raises(DecodeError, match=f"attribute {attribute}"):
        from_structured(obj)


def test_is_structured() -> None:
    assert is_structured({"specversion": "1.0", "id": "1", "type": "t"})
    assert not is_structured({"id": "1", "type": "t"})
    assert not is_structured([1, 2])


def test_decode_json_raises_decode_error() -> None:
    assert decode_json(b'{"a": 1}') == {"a": 1}
    with pytest.raises(DecodeError, match="not valid JSON"):
        decode_json(b"{nope")


def test_encode_data_passes_bytes_through() -> None:
    assert encode_data(b"\x00raw") == b"\x00raw"
    assert encode_data(bytearray(b"ab")) == b"ab"
    assert msgspec.json.decode(encode_data({"a": 1})) == {"a": 1}
