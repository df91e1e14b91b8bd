"""The Vertex AI dynamic provider against a fake of the REST API it calls.

``FakeVertex`` keeps endpoints and models in memory and enforces what Vertex AI
enforces: a traffic split sums to 100 over deployed models, ``"0"`` names the
model being deployed, operations finish only after being polled.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import dill
import pytest

from scorebus.deploy.vertex import VertexDeploymentProvider
from scorebus.deploy.vertex_api import VertexApiError, split_traffic, without

BASE = "https://europe-west4-aiplatform.googleapis.com/v1"
ENDPOINT = "projects/p/locations/europe-west4/endpoints/1234567890"


class FakeVertex:
    def __init__(self) -> None:
        self.endpoints: dict[str, dict[str, int]] = {ENDPOINT: {}}
        self.models: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self._ids = itertools.count(101)

    def __call__(self, method: str, url: str, body: Mapping[str, Any] | None = None) -> Any:
        self.calls.append((method, url))
        path = url.removeprefix(f"{BASE}/")
        if method == "GET" and path in self.operations:
            return {"name": path, "done": True, **self.operations[path]}
        if method == "POST" and path.endswith("/models:upload"):
            assert body is not None
            name = f"{path.removesuffix(':upload')}/{next(self._ids)}"
            self.models[name] = dict(body["model"])
            return self._operation({"response": {"model": name}})
        if method == "DELETE" and path in self.models:
            del self.models[path]
            return self._operation({"response": {}})
        endpoint, _, verb = path.partition(":")
        endpoint = endpoint.partition("?")[0]
        if endpoint not in self.endpoints:
            raise VertexApiError(f"{method} {url}: 404", 404)
        split = self.endpoints[endpoint]
        if method == "GET":
            return {"name": endpoint, "trafficSplit": dict(split)}
        assert body is not None
        if verb == "deployModel":
            assert body["deployedModel"]["model"] in self.models
            new = str(next(self._ids))
            traffic = {new if k == "0" else k: v for k, v in body["trafficSplit"].items()}
            self._set(endpoint, traffic, {*split, new})
            return self._operation({"response": {"deployedModel": {"id": new}}})
        if verb == "undeployModel":
            gone = body["deployedModelId"]
            assert gone in split
            self._set(endpoint, body["trafficSplit"], set(split) - {gone})
            return self._operation({"response": {}})
        if method == "PATCH":
            self._set(endpoint, body["trafficSplit"], set(split))
            return {"name": endpoint}
        raise AssertionError(f"unexpected {method} {url}")

    def _set(self, endpoint: str, traffic: Mapping[str, int], deployed: set[str]) -> None:
        assert set(traffic) <= deployed, f"split {traffic} names undeployed models"
        assert sum(traffic.values()) == (100 if deployed else 0), traffic
        self.endpoints[endpoint] = {k: int(v) for k, v in traffic.items()} | {
            k: 0 for k in deployed - set(traffic)
        }

    def _operation(self, result: dict[str, Any]) -> dict[str, Any]:
        name = f"projects/p/locations/europe-west4/operations/{next(self._ids)}"
        self.operations[name] = result
        return {"name": name, "done": False}


def props(**overrides: Any) -> dict[str, Any]:
    base = {
        "project": "p",
        "region": "europe-west4",
        "endpoint": ENDPOINT,
        "display_name": "fraud@3",
        "artifact_uri": "gs://bucket/models/fraud/3/",
        "serving_image": "europe-west4-docker.pkg.dev/p/scorebus/serve:0.1.0",
        "machine_type": "n1-standard-2",
        "min_replicas": 1.0,  # Pulumi hands numbers over as floats
        "max_replicas": 2.0,
        "traffic_percentage": 100.0,
    }
    return base | overrides


@pytest.fixture
def fake() -> FakeVertex:
    return FakeVertex()


@pytest.fixture
def provider(fake: FakeVertex) -> VertexDeploymentProvider:
    sleeps: list[float] = []
    return VertexDeploymentProvider(lambda: fake, sleep=sleeps.append, poll_s=0.01)


def test_create_uploads_the_model_and_gives_it_all_traffic_on_an_empty_endpoint(
    fake: FakeVertex, provider: VertexDeploymentProvider
) -> None:
    created = provider.create(props())

    outs = created.outs or {}
    assert fake.endpoints[ENDPOINT] == {outs["deployed_model_id"]: 100}
    assert created.id == f"{ENDPOINT}/deployedModels/{outs['deployed_model_id']}"
    model = fake.models[outs["model"]]
    assert model["artifactUri"] == "gs://bucket/models/fraud/3/"
    assert model["containerSpec"]["imageUri"].endswith("serve:0.1.0")
    assert outs["traffic_percentage"] == 100.0


def test_a_second_model_takes_its_share_and_update_moves_traffic_in_place(
    fake: FakeVertex, provider: VertexDeploymentProvider
) -> None:
    first = (provider.create(props()).outs or {})["deployed_model_id"]
    second = provider.create(props(display_name="fraud@4", traffic_percentage=10.0)).outs or {}

    assert fake.endpoints[ENDPOINT] == {first: 90, second["deployed_model_id"]: 10}
    diff = provider.diff("id", second, props(display_name="fraud@4", traffic_percentage=30.0))
    assert diff.changes and not diff.replaces
    provider.update("id", second, props(display_name="fraud@4", traffic_percentage=30.0))
    assert fake.endpoints[ENDPOINT] == {first: 70, second["deployed_model_id"]: 30}


def test_delete_hands_the_share_back_and_removes_the_model(
    fake: FakeVertex, provider: VertexDeploymentProvider
) -> None:
    first = provider.create(props()).outs or {}
    second = provider.create(props(traffic_percentage=25.0)).outs or {}

    provider.delete("id", second)

    assert fake.endpoints[ENDPOINT] == {first["deployed_model_id"]: 100}
    assert second["model"] not in fake.models and first["model"] in fake.models


def test_delete_after_the_endpoint_is_gone_is_not_an_error(
    fake: FakeVertex, provider: VertexDeploymentProvider
) -> None:
    created = provider.create(props()).outs or {}
    del fake.endpoints[ENDPOINT]

    provider.delete("id", created)

    assert created["model"] not in fake.models


def test_any_change_but_traffic_replaces_the_deployment(provider: VertexDeploymentProvider) -> None:
    diff = provider.diff(
        "id", props(), props(serving_image="other:1", machine_type="n1-standard-4")
    )

    assert diff.changes
    assert sorted(diff.replaces or []) == ["machine_type", "serving_image"]
    assert diff.delete_before_replace is False
    assert not provider.diff("id", props(), props()).changes


def test_a_failed_operation_is_an_error_naming_it(fake: FakeVertex) -> None:
    def failing(method: str, url: str, body: Mapping[str, Any] | None = None) -> Any:
        if url.endswith(":upload"):
            return {"name": "ops/9", "done": True, "error": {"code": 3, "message": "bad image"}}
        return fake(method, url, body)

    provider = VertexDeploymentProvider(lambda: failing, sleep=lambda _: None)

    with pytest.raises(VertexApiError, match=r"ops/9 failed.*bad image"):
        provider.create(props())


def test_long_operations_are_polled(fake: FakeVertex) -> None:
    sleeps: list[float] = []
    provider = VertexDeploymentProvider(lambda: fake, sleep=sleeps.append, poll_s=5)

    provider.create(props())

    assert sleeps == [5, 5]  # upload, then deploy: each polled once before done
    assert sum(1 for m, u in fake.calls if m == "GET" and "/operations/" in u) == 2


def test_the_provider_survives_pickling_into_the_state() -> None:
    provider = VertexDeploymentProvider(poll_s=3)

    copy = dill.loads(dill.dumps(provider, recurse=True))

    assert type(copy).__module__ == "scorebus.deploy.vertex"
    assert copy.poll_s == 3 and copy.transport is None


@pytest.mark.parametrize(
    ("current", "new", "pct", "expected"),
    [
        ({}, "0", 10, {"0": 100}),
        ({"a": 100}, "0", 100, {"0": 100}),
        ({"a": 100}, "0", 10, {"0": 10, "a": 90}),
        ({"a": 50, "b": 50}, "0", 25, {"0": 25, "a": 38, "b": 37}),
        ({"a": 70, "b": 30}, "b", 50, {"b": 50, "a": 50}),
        ({"a": 0, "b": 100}, "0", 20, {"0": 20, "b": 80}),
    ],
)
def test_split_traffic(
    current: dict[str, int], new: str, pct: int, expected: dict[str, int]
) -> None:
    got = split_traffic(current, new, pct)

    assert got == expected
    assert sum(got.values()) == 100


def test_without_shares_out_the_gone_models_traffic() -> None:
    assert without({"a": 60, "b": 30, "c": 10}, "a") == {"b": 75, "c": 25}
    assert without({"a": 100, "b": 0, "c": 0}, "a") == {"b": 50, "c": 50}
    assert without({"a": 100}, "a") == {}
