"""The model server on a real loopback port, called by scorebus's remote flavours and by
tritonclient (an OIP v2 client nobody here wrote). No mocks: uvicorn serves the app,
a tiny ``http.server`` stub plays a misbehaving endpoint.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn

from scorebus.errors import ConfigError, ModelUnavailable, PermanentError
from scorebus.models.base import Model, Signature
from scorebus.models.registry import Registry
from scorebus.models.remote import (
    BadModelResponse,
    HttpRetry,
    ModelRequestRejected,
    OipModel,
    VertexModel,
)
from scorebus.serving import ServingSettings, create_app, load_served_model

FEATURES = ("amount", "hour", "distance_km", "velocity")
ENDPOINT = "projects/demo/locations/europe-west4/endpoints/123"
FAST = HttpRetry(max_attempts=3, base_delay_s=0.01, max_delay_s=0.05)


def free_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.contextmanager
def running(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; stop it afterwards."""
    sock = free_socket()
    config = uvicorn.Config(app, log_level="warning", lifespan="on", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(7)
    x = rng.normal(size=(400, len(FEATURES))) * [50, 6, 20, 2] + [80, 12, 15, 1]
    y = (x[:, 0] / 50 + x[:, 2] / 20 + rng.normal(size=400) > 3).astype(int)
    reg = Registry(tmp_path_factory.mktemp("registry"))
    reg.register("risk", LogisticRegression(max_iter=500).fit(x, y), features=FEATURES)
    return reg


@pytest.fixture(scope="module")
def local(registry: Registry) -> Model:
    return registry.load("risk@1")


@pytest.fixture(scope="module")
def served(registry: Registry) -> Iterator[tuple[str, Any]]:
    model = load_served_model("risk@1", registry.root, settings=ServingSettings())
    app = create_app(model)
    with running(app) as url:
        yield url, app


@pytest.fixture
def opened() -> Iterator[list[VertexModel | OipModel]]:
    """Remote models a test made; their connection pools are closed afterwards."""
    models: list[VertexModel | OipModel] = []
    yield models
    for model in models:
        model.close()


@pytest.fixture
def batch() -> np.ndarray:
    rng = np.random.default_rng(3)
    return (rng.normal(size=(300, len(FEATURES))) * [50, 6, 20, 2] + [80, 12, 15, 1]).astype(
        np.float32
    )


# --- the Vertex AI contract, spoken by plain HTTP and by VertexModel -------------------


def test_vertex_contract_answers_lists_and_objects(served: Any, local: Model) -> None:
    url, _ = served
    rows = [[120.0, 3.0, 40.0, 2.0], [15.5, 14.0, 1.0, 0.0]]
    objects = [dict(zip(FEATURES, r, strict=True)) | {"card_id": "c-1"} for r in rows]

    health = httpx.get(f"{url}/health")
    as_lists = httpx.post(f"{url}/predict", json={"instances": rows, "parameters": {}}).json()
    as_objects = httpx.post(f"{url}/predict", json={"instances": objects}).json()

    assert health.status_code == 200
    expected = local.predict(np.array(rows, dtype=np.float32)).tolist()
    assert as_lists == {"predictions": expected, "deployedModelId": "risk@1"}
    assert as_objects["predictions"] == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b'{"rows": []}', "instances"),
        (b'{"instances": [[1, 2, 3]]}', "takes 4"),
        (b'{"instances": [{"amount": 1}]}', "lacks feature"),
        (b'{"instances": [[1, 2, 3, "x"]]}', "$.instances[0][3]"),
    ],
)
def test_vertex_contract_rejects_bad_bodies_with_json_400(
    served: Any, body: bytes, message: str
) -> None:
    response = httpx.post(f"{served[0]}/predict", content=body)

    assert response.status_code == 400
    assert message in response.json()["error"]


def test_vertex_model_gets_the_local_predictions(
    served: Any, local: Model, batch: Any, opened: list[Any]
) -> None:
    model = VertexModel(ENDPOINT, name="risk", signature=local.signature, base_url=served[0])
    opened.append(model)
    model.load()  # anonymous (loopback), one probe row

    scores = model.predict(batch)

    np.testing.assert_array_equal(scores, local.predict(batch))
    assert model.version == "risk@1"  # the deployedModelId of the last answer


def test_vertex_model_load_catches_a_signature_the_endpoint_does_not_fit(
    served: Any, opened: list[Any]
) -> None:
    two = Signature(inputs=FEATURES, outputs=("p0", "p1"))
    model = VertexModel(ENDPOINT, signature=two, base_url=served[0])
    opened.append(model)

    with pytest.raises(BadModelResponse, match=r"expected 2 output\(s\)"):
        model.load()


def test_vertex_model_splits_a_large_batch_and_keeps_order(
    served: Any, local: Model, batch: Any, opened: list[Any]
) -> None:
    url, app = served
    model = VertexModel(
        ENDPOINT,
        version="v",
        signature=local.signature,
        base_url=url,
        instance_format="dict",
        max_request_bytes=4000,
    )
    opened.append(model)
    model.load()
    expected_requests = len(list(model.request_bodies(batch)))
    before = app.state.requests["predict"]

    scores = model.predict(batch)

    assert expected_requests > 5
    assert app.state.requests["predict"] - before == expected_requests
    np.testing.assert_array_equal(scores, local.predict(batch))


# --- retries and garbage, against a stub endpoint -------------------------------------


class Stub:
    """A loopback HTTP endpoint answering POSTs from a script of (status, headers, body)."""

    def __init__(self, script: Callable[[int], tuple[int, dict[str, str], bytes]]) -> None:
        self.hits: list[tuple[float, dict[str, str]]] = []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                stub.hits.append((time.monotonic(), dict(self.headers)))
                status, headers, body = script(len(stub.hits))
                self.send_response(status)
                for key, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> Stub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


GOOD = (
    200,
    {"Content-Type": "application/json"},
    b'{"predictions": [0.25], "deployedModelId": "77"}',
)
ONE_ROW = np.ones((1, len(FEATURES)), dtype=np.float32)


@pytest.fixture
def vertex(local: Model, opened: list[Any]) -> Callable[..., VertexModel]:
    def make(url: str, **kw: Any) -> VertexModel:
        model = VertexModel(ENDPOINT, version="0", signature=local.signature, base_url=url, **kw)
        opened.append(model)
        model.load()
        return model

    return make


def test_vertex_model_retries_503_and_429_honouring_retry_after(vertex: Any) -> None:
    def script(hit: int) -> tuple[int, dict[str, str], bytes]:
        if hit == 1:
            return 503, {}, b"warming up"
        if hit == 2:
            return 429, {"Retry-After": "1"}, b'{"error": "quota"}'
        return GOOD

    with Stub(script) as stub:
        scores = vertex(stub.url, retry=FAST).predict(ONE_ROW)

    assert scores.tolist() == [0.25]
    assert len(stub.hits) == 3
    assert stub.hits[2][0] - stub.hits[1][0] >= 1.0  # waited for Retry-After


def test_vertex_model_gives_up_as_model_unavailable(vertex: Any) -> None:
    with Stub(lambda hit: (503, {}, b"down")) as stub:
        with pytest.raises(ModelUnavailable, match="after 3 tries: HTTP 503"):
            vertex(stub.url, retry=FAST).predict(ONE_ROW)
        assert len(stub.hits) == 3

    with Stub(lambda hit: (429, {"Retry-After": "120"}, b"")) as stub:
        with pytest.raises(ModelUnavailable) as caught:
            vertex(stub.url, retry=FAST).predict(ONE_ROW)
        assert caught.value.retry_after_s == 120  # left to the runtime's nack
        assert len(stub.hits) == 1


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"<html>oops</html>", "not JSON"),
        (b'{"outputs": []}', 'expected {"predictions"'),
        (b'{"predictions": [0.1, 0.2]}', "sent 1 rows, got 2 predictions"),
        (b'{"predictions": ["high"]}', "must be numbers"),
    ],
)
def test_vertex_model_raises_on_garbage_answers(vertex: Any, answer: bytes, message: str) -> None:
    with Stub(lambda hit: (200, {}, answer)) as stub:
        model = vertex(stub.url, retry=FAST)
        with pytest.raises(BadModelResponse, match=message) as caught:
            model.predict(ONE_ROW)

    assert isinstance(caught.value, PermanentError)


def test_vertex_model_sends_the_bearer_token_and_maps_400(vertex: Any) -> None:
    from google.oauth2.credentials import Credentials

    with Stub(lambda hit: (400, {}, b'{"error": {"message": "bad instance"}}')) as stub:
        model = vertex(stub.url, credentials=Credentials(token="t0ken"), retry=FAST)
        with pytest.raises(ModelRequestRejected, match="bad instance"):
            model.predict(ONE_ROW)

    assert stub.hits[0][1]["authorization"] == "Bearer t0ken"
    assert len(stub.hits) == 1  # a 400 is not retried


def test_vertex_model_refreshes_credentials_once_on_401(vertex: Any) -> None:
    from google.oauth2.credentials import Credentials

    with Stub(lambda hit: (401, {}, b"expired")) as stub:
        model = vertex(stub.url, credentials=Credentials(token="stale"), retry=FAST)
        # A token without a refresh token cannot be refreshed: that is a token problem,
        # reported as the endpoint being unavailable (an operator can fix it).
        with pytest.raises(ModelUnavailable, match="cannot get a token"):
            model.predict(ONE_ROW)

    assert len(stub.hits) == 1


# --- Open Inference Protocol v2 -------------------------------------------------------


def test_oip_endpoints(served: Any, local: Model) -> None:
    url, _ = served
    x = [[120.0, 3.0, 40.0, 1.0], [15.5, 14.0, 1.0, 0.0]]
    expected = local.predict(np.array(x, dtype=np.float32)).tolist()
    tensor = {"name": "input-0", "shape": [2, 4], "datatype": "FP64", "data": x}  # nested
    columns = [  # one tensor per feature, each in its own datatype
        {"name": "amount", "shape": [2], "datatype": "FP32", "data": [120.0, 15.5]},
        {"name": "velocity", "shape": [2, 1], "datatype": "BOOL", "data": [True, False]},
        {"name": "hour", "shape": [2], "datatype": "INT64", "data": [3, 14]},
        {"name": "distance_km", "shape": [2], "datatype": "INT32", "data": [40, 1]},
    ]

    meta = httpx.get(f"{url}/v2/models/risk").json()
    answer = httpx.post(
        f"{url}/v2/models/risk/versions/1/infer", json={"inputs": [tensor], "id": "a"}
    )
    by_column = httpx.post(f"{url}/v2/models/risk/infer", json={"inputs": columns}).json()

    assert httpx.get(f"{url}/v2/health/live").status_code == 200
    assert httpx.get(f"{url}/v2/health/ready").status_code == 200
    assert httpx.get(f"{url}/v2/models/risk/ready").status_code == 200
    assert meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP32", "shape": [-1, 4]}]
    assert answer.json() == {
        "model_name": "risk",
        "model_version": "1",
        "outputs": [{"name": "output-0", "shape": [2], "datatype": "FP32", "data": expected}],
        "id": "a",
    }
    assert by_column["outputs"][0]["data"] == expected


def one(shape: list[int], datatype: str, data: list[Any]) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": shape, "datatype": datatype, "data": data}]}


INFER = "/v2/models/risk/infer"


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v2/models/other/infer", {"inputs": []}, 404, "no model 'other'"),
        ("/v2/models/risk/versions/9/infer", {"inputs": []}, 404, "risk@9"),
        (INFER, one([1, 3], "FP32", [1, 2, 3]), 400, "expected [n, 4]"),
        (INFER, one([1, 4], "FP32", [1, 2]), 400, "needs 4 values"),
        (INFER, one([1, 4], "BYTES", ["a"] * 4), 400, "datatype 'BYTES'"),
        (INFER, one([1, 4], "INT64", [1.5] * 4), 400, "does not match"),
        (INFER, {"input": []}, 400, "inputs"),
    ],
)
def test_oip_errors_are_json(served: Any, path: str, body: Any, status: int, message: str) -> None:
    response = httpx.post(f"{served[0]}{path}", json=body)

    assert response.status_code == status
    assert message in response.json()["error"]


def test_oip_model_gets_the_local_predictions_in_split_requests(
    served: Any, local: Model, batch: Any, opened: list[Any]
) -> None:
    url, app = served
    model = OipModel(url, "risk", signature=local.signature, max_request_bytes=5000)
    opened.append(model)
    model.load()
    before = app.state.requests["infer"]

    scores = model.predict(batch)

    assert model.version == "1"
    assert app.state.requests["infer"] - before == len(list(model.request_bodies(batch))) > 1
    np.testing.assert_array_equal(scores, local.predict(batch))


def test_oip_model_unknown_model_is_unavailable(served: Any, local: Model) -> None:
    model = OipModel(served[0], "nope", signature=local.signature, retry=FAST)

    with pytest.raises(ModelUnavailable, match="HTTP 404"):
        model.load()


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_gets_the_local_predictions(
    served: Any, local: Model, batch: Any, binary: bool
) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=served[0].removeprefix("http://"))
    meta = client.get_model_metadata("risk")
    tensor = triton.InferInput(meta["inputs"][0]["name"], list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=binary)
    wanted = None if binary else [triton.InferRequestedOutput("output-0", binary_data=False)]

    result = client.infer("risk", [tensor], outputs=wanted)

    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("risk")
    assert meta["name"] == "risk" and meta["versions"] == ["1"]
    np.testing.assert_array_equal(result.as_numpy("output-0"), local.predict(batch))
    client.close()


# --- the container contract: AIP_* variables, end to end in a subprocess --------------


def test_serve_honours_the_aip_variables(registry: Registry, local: Model) -> None:
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    env = os.environ | {
        "AIP_HTTP_PORT": str(port),
        "AIP_HEALTH_ROUTE": "/ping",
        "AIP_PREDICT_ROUTE": "/v1/predict",
        "AIP_STORAGE_URI": (registry.root / "risk" / "1").as_uri(),
    }
    code = "from scorebus.serving import serve; serve()"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/ping").status_code == 200:
                    break
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        answer = httpx.post(f"{url}/v1/predict", json={"instances": [[1, 2, 3, 4]]}).json()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, log = proc.communicate(timeout=15)

    expected = local.predict(np.array([[1, 2, 3, 4]], dtype=np.float32)).tolist()
    assert answer == {"predictions": expected, "deployedModelId": "risk@1"}
    # uvicorn drains, then re-raises SIGTERM so the exit status tells how it ended.
    assert proc.returncode in (0, -signal.SIGTERM)
    assert b"Finished server process" in log
    assert f"Uvicorn running on http://127.0.0.1:{port}".encode() in log


def test_settings_come_from_aip_variables(tmp_path: Path) -> None:
    assert ServingSettings.from_env({}) == ServingSettings()
    assert ServingSettings.from_env({"AIP_HTTP_PORT": "9000", "AIP_STORAGE_URI": "gs://b/m"}) == (
        ServingSettings(http_port=9000, storage_uri="gs://b/m")
    )
    with pytest.raises(ConfigError, match="AIP_HTTP_PORT"):
        ServingSettings.from_env({"AIP_HTTP_PORT": "http"})
    with pytest.raises(ConfigError, match="AIP_PREDICT_ROUTE"):
        ServingSettings.from_env({"AIP_PREDICT_ROUTE": "predict"})
    with pytest.raises(ConfigError, match="exactly one model file"):
        load_served_model(settings=ServingSettings(storage_uri=str(tmp_path)))
    with pytest.raises(ConfigError, match="does not exist"):
        load_served_model(settings=ServingSettings(storage_uri=str(tmp_path / "none")))
    with pytest.raises(ConfigError, match="give NAME"):
        load_served_model(settings=ServingSettings())


def test_gs_uri_without_the_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "google.cloud.storage", None)  # as if not installed

    with pytest.raises(ImportError, match=r"pip install 'scorebus\[gcs\]'"):
        load_served_model(settings=ServingSettings(storage_uri="gs://bucket/models/risk"))
