"""`scorebus ingest` and `scorebus serve-model` started as a user starts them."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from tests.e2e.e2e_support import CLI, Cli


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _serving(cli: Cli, *args: str, port: int, ready_path: str) -> Iterator[str]:
    proc = subprocess.Popen([*CLI, *args], cwd=cli.cwd, env=cli.env, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                if httpx.get(url + ready_path, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        if proc.stderr:
            proc.stderr.close()


def test_ingest_publishes_onto_the_embedded_broker(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    port = _free_port()
    with _serving(cli, "ingest", "--port", str(port), ready_path="/healthz", port=port) as url:
        headers = {
            "ce-id": "ev-1",
            "ce-type": "sensor.reading",
            "ce-source": "tests",
            "ce-specversion": "1.0",
            "content-type": "application/json",
        }
        response = httpx.post(
            f"{url}/topics/readings/events", headers=headers, content=b'{"value": 3}', timeout=30
        )
        assert response.status_code == 202
        assert response.json()["ids"] == ["ev-1"]
        bad = httpx.post(
            f"{url}/topics/readings/events", headers=headers, content=b"{oops", timeout=30
        )
        assert bad.status_code == 400
    status = json.loads(cli.run("status", "--json").stdout)
    assert [(s["topic"], s["pending"]) for s in status["subscriptions"]] == [("readings", 1)]


def test_serve_model_answers_vertex_and_oip_requests(
    tmp_path: Path, trained_registry: Path
) -> None:
    cli = Cli(tmp_path)
    port = _free_port()
    args = (
        "serve-model",
        "fraud@champion",
        "--registry",
        str(trained_registry),
        "--port",
        str(port),
    )
    with _serving(cli, *args, ready_path="/v2/health/ready", port=port) as url:
        row = [120.0, 3, 8, 250.0, 6.0, 20, 1, 1]
        vertex = httpx.post(
            f"{url}/predict",
            json={"instances": [row, [5.0, 12, 0, 1.0, 0.0, 900, 0, 0]]},
            timeout=30,
        ).json()
        assert len(vertex["predictions"]) == 2
        assert vertex["deployedModelId"].startswith("fraud@")
        oip = httpx.post(
            f"{url}/v2/models/fraud/infer",
            json={
                "inputs": [{"name": "input-0", "shape": [1, 8], "datatype": "FP32", "data": row}]
            },
            timeout=30,
        ).json()
        assert oip["outputs"][0]["data"][0] == vertex["predictions"][0]
