"""Request splitting, instance encoding, answer checking and URL rules of the remote flavours.

No network: bodies are built and decoded here; talking to a server is
``tests/integration/test_model_server.py``.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import msgspec
import numpy as np
import pytest

from scorebus.errors import ConfigError, ModelLoadError, TooLargeError
from scorebus.models.base import Signature
from scorebus.models.remote import (
    BadModelResponse,
    HttpRetry,
    OipModel,
    VertexModel,
    plan_chunks,
    predict_url,
)
from scorebus.models.remote._auth import is_loopback
from scorebus.models.remote._http import backoff_delay, parse_retry_after, prediction_array

SIG = Signature(inputs=("a", "b", "c"))
ENDPOINT = "projects/p/locations/us-central1/endpoints/42"


def rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32)


# --- splitting math --------------------------------------------------------------------


def test_plan_chunks_fills_each_request_up_to_the_limit() -> None:
    # overhead 10 + rows of 10 joined by 1-byte commas: 3 rows = 10 + 30 + 2 = 42 bytes
    assert plan_chunks([10] * 7, limit=42, overhead=10) == [(0, 3), (3, 6), (6, 7)]
    assert plan_chunks([10] * 7, limit=41, overhead=10) == [(0, 2), (2, 4), (4, 6), (6, 7)]
    assert plan_chunks([10] * 3, limit=10_000, overhead=10) == [(0, 3)]
    assert plan_chunks([], limit=100, overhead=10) == []


def test_plan_chunks_refuses_a_row_that_can_never_fit() -> None:
    with pytest.raises(TooLargeError, match="row 2 encodes to 95 bytes"):
        plan_chunks([5, 5, 95], limit=100, overhead=10)
    assert plan_chunks([90], limit=100, overhead=10) == [(0, 1)]  # exactly full


@pytest.mark.parametrize("seed", range(20))
def test_plan_chunks_covers_every_row_in_order_within_the_limit(seed: int) -> None:
    rng = random.Random(seed)
    sizes = [rng.randint(1, 50) for _ in range(rng.randint(1, 300))]
    limit = rng.randint(60, 400)

    chunks = plan_chunks(sizes, limit=limit, overhead=10)

    assert [i for a, b in chunks for i in range(a, b)] == list(range(len(sizes)))
    for a, b in chunks:
        assert 10 + sum(sizes[a:b]) + (b - a - 1) <= limit
    for (a, _), (c, _) in itertools.pairwise(chunks):
        assert 10 + sum(sizes[a : c + 1]) + (c - a) > limit  # greedy: the next row did not fit


# --- encoding: the bodies a batch becomes ---------------------------------------------


@pytest.mark.parametrize("fmt", ["list", "dict"])
def test_vertex_bodies_hold_every_instance_in_order_within_the_limit(fmt: Any) -> None:
    x = rows(500)
    model = VertexModel(
        ENDPOINT,
        signature=SIG,
        instance_format=fmt,
        parameters={"threshold": 0.5},
        max_request_bytes=3000,
    )

    bodies = list(model.request_bodies(x))
    decoded = [msgspec.json.decode(body) for body, _ in bodies]

    assert len(bodies) > 10
    assert all(len(body) <= 3000 for body, _ in bodies)
    assert all(d["parameters"] == {"threshold": 0.5} for d in decoded)
    assert [len(d["instances"]) for d in decoded] == [n for _, n in bodies]
    instances = [i for d in decoded for i in d["instances"]]
    if fmt == "dict":
        instances = [[i[k] for k in SIG.inputs] for i in instances]
    # float32 -> JSON -> float32 is exact
    np.testing.assert_array_equal(np.array(instances, dtype=np.float32), x)


def test_vertex_instances_are_lists_or_objects_keyed_by_input() -> None:
    x = np.array([[1.5, 2, 0.25]], dtype=np.float32)

    as_list = VertexModel(ENDPOINT, signature=SIG).encode_instances(x)
    as_dict = VertexModel(ENDPOINT, signature=SIG, instance_format="dict").encode_instances(x)

    assert as_list == [b"[1.5,2.0,0.25]"]
    assert as_dict == [b'{"a":1.5,"b":2.0,"c":0.25}']


def test_oip_bodies_are_flattened_tensors_with_their_own_shape() -> None:
    x = rows(400)
    model = OipModel("http://h:8000", "m", signature=SIG, max_request_bytes=2500)

    bodies = list(model.request_bodies(x))
    tensors = [msgspec.json.decode(body)["inputs"][0] for body, _ in bodies]

    assert len(bodies) > 5
    assert all(len(body) <= 2500 for body, _ in bodies)
    assert [t["shape"] for t in tensors] == [[n, 3] for _, n in bodies]
    assert {t["datatype"] for t in tensors} == {"FP32"}
    data = np.array([v for t in tensors for v in t["data"]], dtype=np.float32)
    np.testing.assert_array_equal(data.reshape(-1, 3), x)


def test_a_row_over_the_limit_is_too_large() -> None:
    model = VertexModel(ENDPOINT, signature=SIG, max_request_bytes=30)

    with pytest.raises(TooLargeError):
        list(model.request_bodies(rows(2)))


def test_predict_before_load_is_refused() -> None:
    with pytest.raises(RuntimeError, match="load"):
        VertexModel(ENDPOINT, signature=SIG).predict(rows(1))
    with pytest.raises(RuntimeError, match="load"):
        OipModel("http://h", "m", signature=SIG).predict(rows(1))


# --- answers ---------------------------------------------------------------------------


def test_prediction_array_shapes_answers_like_a_local_model() -> None:
    two = Signature(inputs=("a",), outputs=("p0", "p1"))

    assert prediction_array([0.5, 1], 2, SIG, "m").dtype == np.float32
    assert prediction_array([[0.5], [1.0]], 2, SIG, "m").shape == (2,)
    assert prediction_array([[0.5, 0.5]], 1, two, "m").shape == (1, 2)
    assert prediction_array([1, 0], 2, SIG, "m").dtype.kind == "i"  # labels stay integers


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([0.1], "sent 2 rows, got 1"),
        (0.1, "sent 2 rows, got 1"),
        (["a", "b"], "must be numbers"),
        ([None, 1], "must be numbers"),
        ([[1, 2], [3]], "not a regular array"),
        ([[1, 2], [3, 4]], "expected 1 output"),
    ],
)
def test_prediction_array_rejects_garbage(values: Any, message: str) -> None:
    with pytest.raises(BadModelResponse, match=message):
        prediction_array(values, 2, SIG, "m")


def test_vertex_reads_object_predictions_and_the_deployed_model_id() -> None:
    two = Signature(inputs=("a",), outputs=("low", "high"))
    model = VertexModel(ENDPOINT, signature=two)
    answer = {"predictions": [{"high": 0.9, "low": 0.1}], "deployedModelId": "5551"}

    result = model._read(answer, 1)

    assert result.tolist() == [[pytest.approx(0.1), pytest.approx(0.9)]]
    assert model.version == "5551"
    with pytest.raises(BadModelResponse, match="keys"):
        model._read({"predictions": [{"high": 0.9}]}, 1)


def test_oip_metadata_names_the_input_its_datatype_and_the_version() -> None:
    model = OipModel("http://h", "m", signature=SIG)
    tensor = {"name": "float_input", "datatype": "FP64", "shape": [-1, 3]}

    model._read_metadata({"name": "m", "versions": ["1", "3", "2"], "inputs": [tensor]})
    body = msgspec.json.decode(next(model.request_bodies(rows(2)))[0])

    assert model.version == "3"
    assert body["inputs"][0]["name"] == "float_input"
    assert body["inputs"][0]["datatype"] == "FP64"


@pytest.mark.parametrize(
    ("inputs", "input_name", "message"),
    [
        ([{"name": "x", "datatype": "FP32", "shape": [-1, 5]}], None, "has shape"),
        ([{"name": "x", "datatype": "BYTES", "shape": [-1, 3]}], None, "expected FP32/FP64"),
        ([{"name": "x"}, {"name": "y"}], None, "several inputs"),
        ([{"name": "x"}], "z", "no input 'z'"),
    ],
)
def test_oip_metadata_that_cannot_fit_the_signature(
    inputs: list[Any], input_name: str | None, message: str
) -> None:
    model = OipModel("http://h", "m", signature=SIG, input_name=input_name)

    with pytest.raises(ModelLoadError, match=message):
        model._read_metadata({"name": "m", "versions": ["1"], "inputs": inputs})


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"outputs": []}, "expected"),
        (
            {"outputs": [{"name": "o", "shape": [2], "parameters": {"binary_data_size": 8}}]},
            "JSON data",
        ),
        ({"outputs": [{"name": "o", "shape": [3], "data": [1, 2]}]}, "holds 2 values"),
        ({"outputs": [{"name": "o", "shape": [1], "data": [1]}]}, "sent 2 rows, got 1"),
    ],
)
def test_oip_garbage_answers(answer: Any, message: str) -> None:
    with pytest.raises(BadModelResponse, match=message):
        OipModel("http://h", "m", signature=SIG)._read(answer, 2)


def test_oip_reads_a_nested_output_and_its_model_version() -> None:
    model = OipModel("http://h", "m", signature=SIG)
    answer = {"model_version": "7", "outputs": [{"shape": [2, 1], "data": [[0.5], [0.25]]}]}

    assert model._read(answer, 2).tolist() == [0.5, 0.25]
    assert model.version == "7"


# --- URLs and retries ------------------------------------------------------------------


def test_predict_url_from_a_resource_name_a_url_or_a_base_url() -> None:
    assert predict_url(ENDPOINT) == (
        "https://us-central1-aiplatform.googleapis.com/v1/" + ENDPOINT + ":predict"
    )
    url = "https://eu.example.com/v1beta1/" + ENDPOINT + ":predict"
    assert predict_url(url) == url
    assert predict_url(ENDPOINT, "http://127.0.0.1:8080/") == (
        "http://127.0.0.1:8080/v1/" + ENDPOINT + ":predict"
    )
    with pytest.raises(ConfigError, match="projects/PROJECT"):
        predict_url("my-endpoint")


def test_only_loopback_urls_go_without_credentials() -> None:
    assert is_loopback("http://127.0.0.1:8080") and is_loopback("http://[::1]:80")
    assert is_loopback("http://localhost:9")
    assert not is_loopback("https://us-central1-aiplatform.googleapis.com")


def test_backoff_is_jittered_and_capped() -> None:
    policy = HttpRetry(base_delay_s=0.1, max_delay_s=1.0)
    rng = random.Random(1)

    delays = [[backoff_delay(a, policy, rng) for _ in range(200)] for a in (1, 2, 3, 8)]

    assert all(max(d) <= cap for d, cap in zip(delays, (0.1, 0.2, 0.4, 1.0), strict=True))
    assert all(min(d) >= 0 for d in delays)
    assert max(delays[3]) > 0.5  # the cap, not the doubling, bounds late tries


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412500.0) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
