"""The plan: what an app needs on Pub/Sub, and the arguments that are refused up front."""

from __future__ import annotations

import pytest

from scorebus import App, Batch, RetryPolicy
from scorebus.deploy import ScorebusGcpArgs, VertexArgs, plan_app, worst_case_batch_s
from scorebus.deploy.iam import account_id
from scorebus.deploy.plan import check_sinks
from scorebus.errors import ConfigError


def _app(name: str = "fraud", **scorer: object) -> App:
    app = App(name)
    options: dict[str, object] = {"subscribe": "orders", **scorer}

    @app.scorer(**options)  # type: ignore[arg-type]
    def price(events: list[object], _: object) -> list[dict[str, bool]]:
        return [{"ok": True} for _ in events]

    return app


def test_the_ack_deadline_is_the_worst_case_batch_rounded_up_within_pubsubs_range() -> None:
    slow = plan_app(_app(batch=Batch(max_wait_ms=1500), ack_deadline_s=100))
    fast = plan_app(_app(ack_deadline_s=1))

    assert (
        worst_case_batch_s(_app(batch=Batch(max_wait_ms=1500), ack_deadline_s=100).scorers[0])
        == 101.5
    )
    assert slow.deliveries[0].ack_deadline_s == 102
    assert fast.deliveries[0].ack_deadline_s == 10  # Pub/Sub's minimum


def test_a_batch_longer_than_pubsubs_deadline_is_refused_naming_the_scorer() -> None:
    with pytest.raises(ConfigError, match=r"'price' on topic 'orders'.*600 s"):
        plan_app(_app(ack_deadline_s=600, batch=Batch(max_wait_ms=1000)))


def test_retry_policy_maps_onto_pubsubs_limits() -> None:
    few = plan_app(_app(retry=RetryPolicy(max_attempts=2, initial_backoff_s=0, max_backoff_s=900)))
    delivery = few.deliveries[0]

    assert delivery.max_delivery_attempts == 5
    assert (delivery.min_backoff_s, delivery.max_backoff_s) == (0, 600)


def test_names_and_topics() -> None:
    app = _app("9lives", publish="orders-priced")

    @app.on("order.refunded")
    def refund(event: object, ctx: object) -> None: ...

    plan = plan_app(app)

    assert plan.input_topics == ("events", "orders")
    assert plan.output_topics == ("events", "orders-priced")
    assert plan.dead_letter_topic == "sb-9lives.dead-letter"
    assert [d.subscription for d in plan.deliveries] == [
        "sb-9lives.events.push",
        "sb-9lives.orders.push",
    ]
    assert account_id(plan.slug, "push") == "sb-9lives-push"
    assert len(account_id("x" * 40, "run")) <= 30


@pytest.mark.parametrize("topic", ["1orders", "google-orders"])
def test_topics_pubsub_refuses_are_refused(topic: str) -> None:
    with pytest.raises(ConfigError, match="not a valid Pub/Sub name"):
        plan_app(_app(subscribe=topic))


def test_an_app_without_consumers_or_with_its_own_sink_is_refused() -> None:
    with pytest.raises(ConfigError, match="nothing to deploy"):
        plan_app(App("empty"))
    with pytest.raises(ConfigError, match=r"writes to 'sqlite:///x\.db'"):
        check_sinks(_app(sink="sqlite:///x.db"), "bigquery://p/d/t")
    check_sinks(_app(sink=False, publish="out"), "bigquery://p/d/t")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"runtime": "python38"}, "python312 or newer"),
        ({"runtime": "python311"}, "python312 or newer"),
        ({"concurrency": 0}, "1..1000"),
        ({"min_instances": 5, "max_instances": 2}, "min_instances"),
        ({"dataset": "my-data"}, "letters, digits and underscores"),
        ({"env": {"SCOREBUS_STORE": "x"}}, "set by the deployment"),
        ({"app": "no_colon"}, "MODULE:ATTRIBUTE"),
    ],
)
def test_bad_arguments_fail_before_pulumi_starts(change: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"project": "p", "region": "r", "app": "m:app"}

    with pytest.raises(ConfigError, match=message):
        ScorebusGcpArgs(**(base | change))  # type: ignore[arg-type]
    assert ScorebusGcpArgs(**(base | {"runtime": "python313"})).runtime == "python313"  # type: ignore[arg-type]


def test_vertex_arguments_are_checked() -> None:
    with pytest.raises(ConfigError, match="min_replicas"):
        VertexArgs(serving_image="img", min_replicas=2, max_replicas=1)
    with pytest.raises(ConfigError, match=r"0\.\.100"):
        VertexArgs(serving_image="img", traffic_percentage=120)
