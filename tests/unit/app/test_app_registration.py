"""App: registrations are instance state, decorators return the function, bad
definitions are ConfigErrors that say what to change."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from scorebus.app import App
from scorebus.errors import ConfigError
from scorebus.events import Event
from scorebus.runtime.config import Batch, FlowControl, RetryPolicy
from scorebus.runtime.spec import HandlerContext


class Tx(msgspec.Struct):
    amount: float


def test_scorer_returns_the_function_unchanged_and_builds_a_spec() -> None:
    app = App("fraud")

    def score(events: list[Tx], scores: Any) -> list[dict[str, float]]:
        return [{"amount": e.amount} for e in events]

    registered = app.scorer(
        subscribe="transactions",
        schema=Tx,
        batch=Batch(max_size=8, max_wait_ms=1),
        retry=RetryPolicy(max_attempts=2),
        publish="scores",
        max_event_bytes=1000,
    )(score)

    assert registered is score
    assert score([Tx(2.0)], None) == [{"amount": 2.0}]
    (spec,) = app.scorers
    assert spec.name == "score"
    assert spec.fn is score
    assert (spec.topic, spec.subscription) == ("transactions", "fraud.score")
    assert spec.result_type == "fraud.score.scored"
    assert spec.schema.type is Tx
    assert spec.schema.max_bytes == 1000
    assert spec.batch == Batch(max_size=8, max_wait_ms=1)
    assert spec.retry.max_attempts == 2
    assert spec.flow == FlowControl()
    assert spec.publish == "scores"


def test_on_returns_the_function_unchanged_and_builds_a_handler_spec() -> None:
    app = App("flows", events_topic="workflow-events", max_hops=4)

    def on_arrival(event: Event, ctx: HandlerContext) -> None:
        ctx.publish("data.validated")

    async def on_done(event: Event, ctx: HandlerContext) -> None:
        return None

    assert app.on("data.arrived", "data.resent")(on_arrival) is on_arrival
    assert app.on("data.done", topic="other-topic", name="finish")(on_done) is on_done

    first, second = app.handlers
    assert first.types == frozenset({"data.arrived", "data.resent"})
    assert (first.topic, first.subscription) == ("workflow-events", "flows.on_arrival")
    assert first.max_hops == 4
    assert not first.is_async
    assert (second.name, second.topic, second.is_async) == ("finish", "other-topic", True)
    assert app.subscriptions() == [
        ("workflow-events", "flows.on_arrival"),
        ("other-topic", "flows.finish"),
    ]


def test_registrations_belong_to_their_app() -> None:
    one, two = App("app-one"), App("app-two")

    @one.scorer(subscribe="topic-a")
    def shared(events: list[Any], _: Any) -> list[Any]:
        return events

    two.scorer(subscribe="topic-b")(shared)

    assert [s.subscription for s in one.scorers] == ["app-one.shared"]
    assert [s.subscription for s in two.scorers] == ["app-two.shared"]


def test_on_startup_returns_the_function_and_keeps_order() -> None:
    app = App("boot")

    def first() -> None: ...
    def second() -> None: ...

    assert app.on_startup(first) is first
    assert app.on_startup(second) is second
    assert app.startup == [first, second]


def noop(*args: Any) -> None:
    return None


def test_duplicate_names_are_config_errors() -> None:
    app = App("dupes")
    app.scorer(subscribe="topic-a", name="score")(noop)

    with pytest.raises(ConfigError, match="already has a scorer or handler 'score'"):
        app.scorer(subscribe="topic-b", name="score")(noop)
    with pytest.raises(ConfigError, match="already has a scorer or handler 'score'"):
        app.on("evt.type", name="score")(noop)

    app.on("evt.type", name="handle")(noop)
    with pytest.raises(ConfigError, match="'handle'"):
        app.scorer(subscribe="topic-a", name="handle")(noop)
    with pytest.raises(ConfigError, match="'handle'"):
        app.on("other.type", name="handle")(noop)
    assert len(app.scorers) == 1
    assert len(app.handlers) == 1


@pytest.mark.parametrize("topic", ["ab", "has space", "-leading", "slash/topic", "x" * 256])
def test_bad_topic_names_are_config_errors(topic: str) -> None:
    app = App("topics")

    with pytest.raises(ConfigError, match=r"topic .*3-255 letters"):
        app.scorer(subscribe=topic)
    with pytest.raises(ConfigError, match="topic"):
        app.scorer(subscribe="good-topic", publish=topic)
    with pytest.raises(ConfigError, match="topic"):
        app.on("evt.type", topic=topic)(noop)


def test_bad_app_and_scorer_names_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="app name 'a b'"):
        App("a b")
    with pytest.raises(ConfigError, match="topic"):
        App("fine", events_topic="no")
    with pytest.raises(ConfigError, match="topic ''"):
        App("names").scorer(subscribe="")
    with pytest.raises(ConfigError, match="scorer name 'x!'"):
        App("names").scorer(subscribe="topic-a", name="x!")(noop)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("batch", {"max_size": 10}, "Batch"),
        ("batch", 10, "Batch"),
        ("flow", Batch(), "FlowControl"),
        ("retry", 3, "RetryPolicy"),
    ],
)
def test_config_groups_of_the_wrong_type_are_config_errors(
    key: str, value: object, expected: str
) -> None:
    with pytest.raises(ConfigError, match=f"{key}=: expected {expected}"):
        App("types").scorer(subscribe="topic-a", **{key: value})


def test_sink_false_means_publish_only_and_needs_a_topic() -> None:
    app = App("sinks")

    app.scorer(subscribe="topic-a", sink=False, publish="scores", name="only-publish")(noop)
    app.scorer(subscribe="topic-a", sink=True, name="default-store")(noop)
    app.scorer(subscribe="topic-a", sink="sqlite:///elsewhere.db", name="own-store")(noop)

    sinks = {s.name: s.sink for s in app.scorers}
    assert sinks == {
        "only-publish": False,
        "default-store": None,
        "own-store": "sqlite:///elsewhere.db",
    }
    with pytest.raises(ConfigError, match="sink=False needs publish=TOPIC"):
        app.scorer(subscribe="topic-a", sink=False)


def test_on_needs_an_event_type() -> None:
    with pytest.raises(ConfigError, match="at least one event type"):
        App("empty").on()
