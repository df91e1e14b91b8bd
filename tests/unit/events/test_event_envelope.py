"""Event.new: fresh ids, the current time, and the causation chain."""

from __future__ import annotations

import time

from scorebus.events import Event
from scorebus.events.envelope import CAUSATION, HOPS


def test_new_events_get_unique_ids_and_the_current_time() -> None:
    before = time.time()
    events = [Event.new("order.created", {"n": i}) for i in range(200)]
    after = time.time()

    assert len({e.id for e in events}) == 200
    assert all(e.id for e in events)
    assert all(before <= e.time <= after for e in events)
    assert events[3].type == "order.created"
    assert events[3].data == {"n": 3}


def test_new_keeps_an_explicit_id_source_and_subject() -> None:
    event = Event.new("t.x", None, id="evt-1", source="tests", subject="card-9")

    assert (event.id, event.source, event.subject) == ("evt-1", "tests", "card-9")


def test_an_event_without_a_cause_has_no_causation_and_zero_hops() -> None:
    event = Event.new("a")

    assert event.causation_id is None
    assert event.hops == 0
    assert CAUSATION not in event.extensions


def test_caused_by_sets_causation_id_and_counts_hops() -> None:
    first = Event.new("a")
    second = Event.new("b", caused_by=first)
    third = Event.new("c", caused_by=second)

    assert second.causation_id == first.id
    assert third.causation_id == second.id
    assert (first.hops, second.hops, third.hops) == (0, 1, 2)
    assert third.extensions[HOPS] == "2"


def test_caused_by_keeps_other_extensions() -> None:
    cause = Event.new("a")
    event = Event.new("b", caused_by=cause, extensions={"tenant": "acme"})

    assert event.extensions == {"tenant": "acme", CAUSATION: cause.id, HOPS: "1"}


def test_a_malformed_hops_extension_reads_as_zero() -> None:
    event = Event(id="1", type="t", extensions={HOPS: "many"})

    assert event.hops == 0


def test_with_data_replaces_only_the_data() -> None:
    event = Event.new("a", b'{"x": 1}', extensions={"k": "v"})
    decoded = event.with_data({"x": 1})

    assert decoded.data == {"x": 1}
    assert event.data == b'{"x": 1}'
    assert (decoded.id, decoded.time, decoded.extensions) == (
        event.id,
        event.time,
        event.extensions,
    )
