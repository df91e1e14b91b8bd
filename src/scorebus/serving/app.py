"""The model server: one model behind the Vertex AI contract and Open Inference Protocol v2.

Routes (errors are ``{"error": "..."}`` with 400, 404, 413 or 503)::

    GET  {health_route}                          200 once the model is loaded (Vertex AI)
    POST {predict_route}                         {"instances": [...]} -> {"predictions": [...]}
    POST /v1/projects/P/locations/L/endpoints/E:predict   the same, at Vertex AI's public
                                                 path: ``VertexModel(base_url=...)`` can call it
    GET  /v2                                     server metadata
    GET  /v2/health/live, /v2/health/ready
    GET  /v2/models/NAME[/versions/V][/ready]    model metadata, readiness
    POST /v2/models/NAME[/versions/V]/infer      OIP v2 inference

Decoding, ``predict`` and encoding run in a worker thread, at most
``max_concurrency`` requests at a time, so health checks answer while the
model is busy; a request's body is read only once it has a slot, so memory
stays within ``max_concurrency * max_body_bytes`` however many clients wait. The model is loaded by
the app's lifespan (uvicorn runs it before accepting connections).

Example::

    model = build_model("model.skops", name="fraud", version="3")
    app = create_app(model)              # then: uvicorn.run(app, port=8080)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator
from importlib import metadata
from typing import Any

import msgspec

from ..models.base import Model, model_id
from . import _oip, _vertex
from .contract import RequestError

try:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("the model server needs starlette: pip install 'scorebus[http]'") from exc

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 32 * 2**20
VERTEX_PUBLIC_PATH = "/v1/projects/{project}/locations/{location}/endpoints/{endpoint}:predict"


def _json(obj: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(obj), status_code=status, media_type="application/json")


class _Server:
    """The routes' shared state: the model, readiness, concurrency and request counts."""

    def __init__(self, model: Model, *, ready: bool, max_concurrency: int, max_body: int) -> None:
        self.model = model
        self.ready = ready
        self.slots = asyncio.Semaphore(max_concurrency)
        self.max_body = max_body
        self.requests: collections.Counter[str] = collections.Counter()

    async def health(self, request: Request) -> Response:
        self._require_ready()
        return _json({"status": "ready", "model": model_id(self.model)})

    async def predict(self, request: Request) -> Response:
        self.requests["predict"] += 1
        self._require_ready()
        async with self.slots:
            body = await self._body(request)
            return await run_in_threadpool(self._answer_vertex, body)

    async def server_metadata(self, request: Request) -> Response:
        try:
            version = metadata.version("scorebus")
        except metadata.PackageNotFoundError:
            version = "unknown"
        return _json({"name": "scorebus", "version": version, "extensions": ["binary_tensor_data"]})

    async def live(self, request: Request) -> Response:
        return _json({"live": True})

    async def server_ready(self, request: Request) -> Response:
        self._require_ready()
        return _json({"ready": True})

    async def model_metadata(self, request: Request) -> Response:
        self._require_model(request)
        self._require_ready()
        return _json(_oip.model_metadata(self.model))

    async def model_ready(self, request: Request) -> Response:
        self._require_model(request)
        self._require_ready()
        return _json({"name": self.model.name, "ready": True})

    async def infer(self, request: Request) -> Response:
        self.requests["infer"] += 1
        self._require_model(request)
        self._require_ready()
        header = request.headers.get("inference-header-content-length")
        async with self.slots:
            body = await self._body(request)
            return await run_in_threadpool(self._answer_oip, body, header)

    def _answer_vertex(self, body: bytes) -> Response:
        x = _vertex.decode_instances(body, self.model.signature)
        predictions = self._predict(x)
        return Response(
            _vertex.encode_predictions(predictions, len(x), model_id(self.model)),
            media_type="application/json",
        )

    def _answer_oip(self, body: bytes, header: str | None) -> Response:
        request, x = _oip.decode_infer(body, header, self.model.signature)
        predictions = self._predict(x)
        content, json_length = _oip.encode_infer(request, predictions, len(x), self.model)
        if json_length is None:
            return Response(content, media_type="application/json")
        return Response(
            content,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(json_length)},
        )

    def _predict(self, x: Any) -> Any:
        try:
            return self.model.predict(x)
        except Exception as exc:
            log.exception("model=%s predict failed on %d rows", model_id(self.model), len(x))
            raise RequestError(500, f"{model_id(self.model)} failed: {exc}") from exc

    async def _body(self, request: Request) -> bytes:
        if request.headers.get("content-encoding", "identity") != "identity":
            raise RequestError(415, "compressed request bodies are not supported")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            raise RequestError(413, f"body of {declared} bytes; the limit is {self.max_body}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise RequestError(413, f"body over the {self.max_body}-byte limit")
            chunks.append(chunk)
        return b"".join(chunks)

    def _require_ready(self) -> None:
        if not self.ready:
            raise RequestError(503, f"model {model_id(self.model)} is loading")

    def _require_model(self, request: Request) -> None:
        name = request.path_params["name"]
        version = request.path_params.get("version")
        if name != self.model.name or (version is not None and version != self.model.version):
            wanted = name if version is None else f"{name}@{version}"
            raise RequestError(
                404, f"no model {wanted!r}; this server has {model_id(self.model)!r}"
            )


async def _request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestError)
    return _json({"error": str(exc)}, exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _json({"error": exc.detail}, exc.status_code)


def create_app(
    model: Model,
    *,
    health_route: str = "/health",
    predict_route: str = "/predict",
    load: bool = True,
    max_concurrency: int = 4,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Starlette:
    """The ASGI app serving ``model``.

    Args:
        model: The model to serve (``name``, ``version`` and ``signature`` are used).
        health_route: Vertex AI health route (``AIP_HEALTH_ROUTE``).
        predict_route: Vertex AI predict route (``AIP_PREDICT_ROUTE``).
        load: Call ``model.load()`` on startup; pass ``False`` for a loaded model.
        max_concurrency: Predicts running at once; more requests wait their turn.
        max_body_bytes: Larger request bodies get 413.

    Returns:
        A Starlette app; ``app.state.requests`` counts ``predict`` and ``infer`` calls.

    Raises:
        ImportError: starlette is not installed.
    """
    server = _Server(
        model, ready=not load, max_concurrency=max_concurrency, max_body=max_body_bytes
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not server.ready:
            await run_in_threadpool(model.load)
            server.ready = True
            log.info("model=%s loaded; serving", model_id(model))
        yield

    get, post = ["GET"], ["POST"]
    model_path, version_path = "/v2/models/{name}", "/v2/models/{name}/versions/{version}"
    routes = [
        Route(health_route, server.health, methods=get),
        Route(predict_route, server.predict, methods=post),
        Route(VERTEX_PUBLIC_PATH, server.predict, methods=post),
        Route("/v2", server.server_metadata, methods=get),
        Route("/v2/health/live", server.live, methods=get),
        Route("/v2/health/ready", server.server_ready, methods=get),
    ]
    for path in (model_path, version_path):
        routes += [
            Route(path, server.model_metadata, methods=get),
            Route(f"{path}/ready", server.model_ready, methods=get),
            Route(f"{path}/infer", server.infer, methods=post),
        ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={RequestError: _request_error, HTTPException: _http_error},
    )
    app.state.requests = server.requests
    return app
