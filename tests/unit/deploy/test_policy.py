"""A policy suite over the whole graph ``ScorebusGcp`` declares, read under Pulumi's mocks.

Each test states one rule of docs/deploy.md and checks it against every
resource of the graph, with the inputs exactly as the Google provider would get
them (camelCase): a misspelt field would be missing here, not silently accepted.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from tests.unit.deploy.conftest import (
    IMAGE,
    PROJECT,
    PROJECT_NUMBER,
    REGION,
    Graph,
    registry_of,
    run_component,
)

from scorebus.app import load_app
from scorebus.deploy import TYPE, ScorebusGcpArgs, VertexArgs, plan_app, worst_case_batch_s
from scorebus.deploy.iam import PRIMITIVE_ROLES
from scorebus.runtime.spec import HandlerSpec, ScorerSpec

SUBSCRIPTION = "gcp:pubsub/subscription:Subscription"
TOPIC = "gcp:pubsub/topic:Topic"
FUNCTION = "gcp:cloudfunctionsv2/function:Function"
AGENT = f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def graph(app_dir: tuple[Path, str]) -> Graph:
    _, ref = app_dir
    vertex = VertexArgs(serving_image=IMAGE)
    args = ScorebusGcpArgs(
        project=PROJECT, region=REGION, app=ref, vertex=vertex, registry=registry_of(app_dir)
    )
    return run_component(args)


def _push_subscriptions(graph: Graph) -> list[Any]:
    return [s for s in graph.of_type(SUBSCRIPTION) if "pushConfig" in s.inputs]


def test_every_subscription_feeding_a_scorer_dead_letters_to_a_kept_topic(
    graph: Graph, app_dir: tuple[Path, str]
) -> None:
    app = load_app(app_dir[1])
    topic_ids = {t.urn: t for t in graph.of_type(TOPIC)}
    by_topic = {s.inputs["topic"]: s for s in _push_subscriptions(graph)}
    scorer_topics = {f"projects/{PROJECT}/topics/{s.topic}" for s in app.scorers}
    kept = {s.inputs["topic"] for s in graph.of_type(SUBSCRIPTION) if "pushConfig" not in s.inputs}

    assert topic_ids
    assert scorer_topics <= set(by_topic), "a scorer's topic has no push subscription"
    for topic in scorer_topics:
        policy = by_topic[topic].inputs["deadLetterPolicy"]
        assert 5 <= policy["maxDeliveryAttempts"] <= 100
        assert policy["deadLetterTopic"] in kept, "letters would be dropped: no subscription"
        assert policy["deadLetterTopic"] != topic


def test_the_ack_deadline_covers_each_consumers_worst_case_batch(
    graph: Graph, app_dir: tuple[Path, str]
) -> None:
    app = load_app(app_dir[1])
    deadline = {
        s.inputs["topic"].rsplit("/", 1)[-1]: s.inputs["ackDeadlineSeconds"]
        for s in _push_subscriptions(graph)
    }

    specs: list[ScorerSpec | HandlerSpec] = [*app.scorers, *app.handlers]
    for spec in specs:
        assert deadline[spec.topic] >= worst_case_batch_s(spec), spec.name
        assert 10 <= deadline[spec.topic] <= 600
    # the audit scorer (120 s lease, 2.5 s batch wait) sets the transactions deadline
    assert deadline["transactions"] == 123
    function = graph.one(FUNCTION).inputs["serviceConfig"]
    assert function["timeoutSeconds"] >= max(deadline.values())


def test_push_is_retried_exponentially_and_signed_for_the_push_identity(graph: Graph) -> None:
    uri = graph.outputs["function_uri"]
    subs = _push_subscriptions(graph)

    assert len(subs) == 3
    for sub in subs:
        topic = sub.inputs["topic"].rsplit("/", 1)[-1]
        push = sub.inputs["pushConfig"]
        assert push["pushEndpoint"] == f"{uri}/projects/{PROJECT}/topics/{topic}"
        assert push["oidcToken"] == {
            "serviceAccountEmail": graph.outputs["push_service_account"],
            "audience": uri,
        }
        retry = sub.inputs["retryPolicy"]
        low, high = (
            float(retry[k].removesuffix("s")) for k in ("minimumBackoff", "maximumBackoff")
        )
        assert 0 <= low <= high <= 600
        assert sub.inputs["expirationPolicy"] == {"ttl": ""}


def test_the_function_is_gen2_python312_plus_and_http_triggered(graph: Graph) -> None:
    assert not graph.of_type("gcp:cloudfunctions/function:Function")
    function = graph.one(FUNCTION).inputs
    found = re.fullmatch(r"python3(\d+)", function["buildConfig"]["runtime"])

    assert found is not None and int(found.group(1)) >= 12
    assert "eventTrigger" not in function
    assert function["buildConfig"]["entryPoint"] == "score"
    build_env = function["buildConfig"]["environmentVariables"]
    assert build_env == {"GOOGLE_FUNCTION_SIGNATURE_TYPE": "cloudevent"}
    env = function["serviceConfig"]["environmentVariables"]
    assert env["SCOREBUS_STORE"] == f"bigquery://{PROJECT}/scorebus/results"
    assert env["SCOREBUS_BROKER"] == f"pubsub://{PROJECT}?create=none"
    assert (
        function["serviceConfig"]["serviceAccountEmail"] == graph.outputs["runtime_service_account"]
    )
    source = function["buildConfig"]["source"]["storageSource"]
    archive = next(
        o
        for o in graph.of_type("gcp:storage/bucketObject:BucketObject")
        if o.inputs["name"] == source["object"]
    )
    assert source["bucket"] == archive.inputs["bucket"] == graph.outputs["source_bucket"]


def test_no_primitive_role_and_no_project_wide_grant(graph: Graph) -> None:
    roles = [r.inputs["role"] for r in graph.resources if "role" in r.inputs]

    assert roles
    assert not PRIMITIVE_ROLES & set(roles)
    assert not [
        r
        for r in graph.resources
        if r.typ.startswith("gcp:projects/iAM")
        and r.typ != "gcp:projects/iAMCustomRole:IAMCustomRole"
    ]
    assert "roles/aiplatform.user" not in roles


def test_each_identity_has_exactly_its_roles(graph: Graph, app_dir: tuple[Path, str]) -> None:
    plan = plan_app(load_app(app_dir[1]))
    runtime = f"serviceAccount:{graph.outputs['runtime_service_account']}"
    push = f"serviceAccount:{graph.outputs['push_service_account']}"
    predict = f"projects/{PROJECT}/roles/scorebus_fraud_predict"
    dead = plan.dead_letter_topic
    granted: dict[str, set[tuple[str, str, str]]] = defaultdict(set)
    for r in graph.resources:
        if r.typ.endswith(("IAMMember", "IamMember")):
            target = next(
                r.inputs[k]
                for k in ("topic", "subscription", "datasetId", "endpoint", "name")
                if k in r.inputs
            )
            granted[r.inputs["member"]].add((r.typ.split(":")[1], r.inputs["role"], target))

    assert granted == {
        runtime: {
            ("pubsub/topicIAMMember", "roles/pubsub.publisher", t)
            for t in (*plan.output_topics, dead)
        }
        | {
            ("bigquery/datasetIamMember", "roles/bigquery.dataEditor", "scorebus"),
            ("vertex/aiEndpointIamMember", predict, graph.outputs["endpoint_id"]),
        },
        push: {
            (
                "cloudrunv2/serviceIamMember",
                "roles/run.invoker",
                f"projects/{PROJECT}/locations/{REGION}/services/fraud-score",
            )
        },
        AGENT: {("pubsub/topicIAMMember", "roles/pubsub.publisher", dead)}
        | {
            ("pubsub/subscriptionIAMMember", "roles/pubsub.subscriber", d.subscription)
            for d in plan.deliveries
        },
    }


def test_the_predict_role_can_only_predict(graph: Graph) -> None:
    role = graph.one("gcp:projects/iAMCustomRole:IAMCustomRole").inputs

    assert role["permissions"] == ["aiplatform.endpoints.predict"]


def test_results_table_has_the_sinks_columns_partitioned_by_day_clustered_by_scorer(
    graph: Graph,
) -> None:
    from scorebus.sinks.base import ScoreResult
    from scorebus.sinks.bigquery import _json_row

    table = graph.one("gcp:bigquery/table:Table").inputs
    columns = [c["name"] for c in json.loads(table["schema"])]
    row = _json_row(
        ScoreResult(
            scorer="s",
            event_id="e",
            model="m",
            model_version="1",
            output=b"{}",
            event_time=0.0,
            scored_at=1.0,
            latency_ms=1.0,
            service_ms=1.0,
        )
    )

    assert columns == list(row)
    assert table["timePartitioning"] == {"type": "DAY", "field": "scored_at"}
    assert table["clusterings"] == ["scorer"]
    assert graph.outputs["table_id"] == f"{PROJECT}.scorebus.results"


def test_the_model_is_deployed_to_the_endpoint_with_a_traffic_split(graph: Graph) -> None:
    deployment = graph.one("pulumi-python:dynamic:Resource").inputs

    assert deployment["endpoint"] == graph.outputs["endpoint"]
    assert deployment["traffic_percentage"] == 100
    assert deployment["serving_image"] == IMAGE
    assert deployment["artifact_uri"] == f"gs://{graph.outputs['source_bucket']}/models/fraud/1/"
    assert graph.outputs["endpoint"].endswith(f"/endpoints/{graph.outputs['endpoint_id']}")
    assert re.fullmatch(r"[1-9]\d{9}", graph.outputs["endpoint_id"])


def test_every_child_has_the_component_as_parent_and_outputs_are_registered(
    graph: Graph,
) -> None:
    component = [r for r in graph.resources if r.typ == TYPE]
    children = [r for r in graph.resources if r.typ != TYPE]

    assert len(component) == 1 and children
    for r in children:
        assert f"::{TYPE}$" in r.urn, f"{r.name} is not a child of the component"
    assert graph.registered_outputs[component[0].urn] == set(graph.outputs)


@pytest.mark.parametrize(
    "key",
    [
        "function_uri",
        "input_topics",
        "output_topics",
        "push_subscriptions",
        "dead_letter_topic",
        "dead_letter_subscription",
        "endpoint_id",
        "table_id",
    ],
)
def test_the_outputs_exist(graph: Graph, key: str) -> None:
    assert graph.outputs.get(key), f"stack output {key} is missing or empty"


def test_without_vertex_args_the_endpoint_stays_empty(app_dir: tuple[Path, str]) -> None:
    graph = run_component(
        ScorebusGcpArgs(
            project=PROJECT,
            region=REGION,
            app=app_dir[1],
            registry=registry_of(app_dir),
            enable_apis=False,
            project_number="42",
        )
    )

    assert not graph.of_type("pulumi-python:dynamic:Resource")
    assert not graph.of_type("gcp:projects/service:Service")
    assert graph.one("gcp:vertex/aiEndpoint:AiEndpoint")
    assert "deployed_model_id" not in graph.outputs
