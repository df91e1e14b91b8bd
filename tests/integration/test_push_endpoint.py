"""The Cloud Run push endpoint under uvicorn: OIDC checks with locally minted keys,
micro-batching across concurrent requests, and answers that follow the commit."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import msgspec
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa

from scorebus import App, Batch, Settings
from scorebus.gcp.oidc import OidcVerifier
from scorebus.gcp.push import create_push_app

ACCOUNT = "push@proj.iam.gserviceaccount.com"
BATCHES: list[int] = []


class Reading(msgspec.Struct):
    value: float


def make_app() -> App:
    app = App("pushapp")

    @app.scorer(subscribe="readings", schema=Reading, batch=Batch(max_size=64, max_wait_ms=50))
    def double(readings: list[Reading], _: Any) -> list[dict[str, float]]:
        BATCHES.append(len(readings))
        return [{"double": r.value * 2} for r in readings]

    return app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Keys:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [{**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}]}

    def token(self, **overrides: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": "https://accounts.google.com",
            "aud": AUDIENCE,
            "email": ACCOUNT,
            "email_verified": True,
            "iat": now,
            "exp": now + 3600,
            "sub": "123",
        }
        claims.update(overrides)
        key = overrides.pop("_key", None) or self.key
        claims.pop("_key", None)
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": self.kid})


AUDIENCE = "https://scorer.example.run.app/pubsub/readings"


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="module")
def jwks_url(keys: Keys) -> Iterator[str]:
    body = json.dumps(keys.jwks).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/certs"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def endpoint(jwks_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("push")
    settings = Settings(
        broker=f"sqlite:///{root}/bus.db",
        store=f"sqlite:///{root}/scores.db",
        registry=root / "models",
    )
    verifier = OidcVerifier(AUDIENCE, ACCOUNT, jwks_url=jwks_url)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_push_app(make_app(), settings, verifier=verifier),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}", root
    server.should_exit = True
    thread.join(20)


def _body(value: object, event_id: str) -> dict[str, Any]:
    data = base64.b64encode(json.dumps({"value": value}).encode()).decode()
    attrs = {"ce-id": event_id, "ce-type": "sensor.reading", "ce-source": "tests"}
    return {
        "message": {"data": data, "attributes": attrs, "messageId": uuid.uuid4().hex},
        "subscription": "projects/p/subscriptions/readings-push",
    }


def _results(root: Path) -> dict[str, dict[str, float]]:
    with sqlite3.connect(root / "scores.db") as conn:
        rows = conn.execute("SELECT event_id, output FROM results").fetchall()
    return {eid: json.loads(out) for eid, out in rows}


def test_a_valid_token_is_scored_and_answered_after_the_commit(
    endpoint: tuple[str, Path], keys: Keys
) -> None:
    url, root = endpoint
    event_id = uuid.uuid4().hex
    response = httpx.post(
        f"{url}/pubsub/readings",
        json=_body(2.5, event_id),
        headers={"authorization": f"Bearer {keys.token()}"},
        timeout=30,
    )
    assert response.status_code == 204
    assert _results(root)[event_id] == {"double": 5.0}


@pytest.mark.parametrize(
    ("claims", "status", "message"),
    [
        (None, 401, "missing bearer token"),
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, 401, "expired"),
        ({"aud": "https://someone.else/"}, 403, "audience"),
        ({"email": "intruder@proj.iam.gserviceaccount.com"}, 403, "not the push identity"),
        ({"email_verified": False}, 403, "not verified"),
        ({"iss": "https://evil.example"}, 403, "issuer"),
    ],
)
def test_a_bad_token_is_refused_and_nothing_is_scored(
    endpoint: tuple[str, Path], keys: Keys, claims: dict[str, Any] | None, status: int, message: str
) -> None:
    url, root = endpoint
    event_id = uuid.uuid4().hex
    headers = {} if claims is None else {"authorization": f"Bearer {keys.token(**claims)}"}
    response = httpx.post(
        f"{url}/pubsub/readings", json=_body(1.0, event_id), headers=headers, timeout=30
    )
    assert response.status_code == status
    assert message in response.json()["error"]
    assert event_id not in _results(root)


def test_a_token_signed_by_another_key_is_refused(endpoint: tuple[str, Path], keys: Keys) -> None:
    url, _ = endpoint
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = keys.token(_key=other)
    response = httpx.post(
        f"{url}/pubsub/readings",
        json=_body(1.0, "x"),
        headers={"authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 401
    assert "invalid token" in response.json()["error"]


def test_concurrent_pushes_are_micro_batched(endpoint: tuple[str, Path], keys: Keys) -> None:
    url, root = endpoint
    ids = [uuid.uuid4().hex for _ in range(60)]
    headers = {"authorization": f"Bearer {keys.token()}"}
    BATCHES.clear()

    async def go() -> list[int]:
        async with httpx.AsyncClient(timeout=60) as client:
            responses = await asyncio.gather(
                *(
                    client.post(f"{url}/pubsub/readings", json=_body(i, eid), headers=headers)
                    for i, eid in enumerate(ids)
                )
            )
        return [r.status_code for r in responses]

    assert asyncio.run(go()) == [204] * len(ids)
    stored = _results(root)
    assert all(stored[eid] == {"double": i * 2} for i, eid in enumerate(ids))
    assert sum(BATCHES) == len(ids)
    assert max(BATCHES) > 1, f"no request shared a batch: {BATCHES}"


def test_a_malformed_body_is_a_400_and_bad_data_is_dead_lettered(
    endpoint: tuple[str, Path], keys: Keys
) -> None:
    url, root = endpoint
    headers = {"authorization": f"Bearer {keys.token()}"}
    response = httpx.post(
        f"{url}/pubsub/readings", content=b"{not json", headers=headers, timeout=30
    )
    assert response.status_code == 400
    assert "not a Pub/Sub push body" in response.json()["error"]
    event_id = uuid.uuid4().hex
    response = httpx.post(
        f"{url}/pubsub/readings", json=_body("high", event_id), headers=headers, timeout=30
    )
    assert response.status_code == 204
    with sqlite3.connect(root / "dead_letters.db") as conn:
        rows = conn.execute(
            "SELECT reason FROM dead_letters WHERE event_id = ?", (event_id,)
        ).fetchall()
    assert rows == [("schema",)]
