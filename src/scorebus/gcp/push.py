"""A Pub/Sub push endpoint for Cloud Run: an ASGI app that scores pushed messages.

    uvicorn --factory 'scorebus.gcp.push:from_env'   # SCOREBUS_APP=my_pipeline:app

``POST /pubsub/{topic}`` (or ``POST /pubsub`` when the app reads one topic)
takes a push body, verifies the OIDC token when an audience and push identity
are configured, and answers only after the result is committed:

| outcome | status |
|---|---|
| scored, or dead-lettered as permanently bad | 204 |
| transient failure (Pub/Sub redelivers with its backoff) | 503 |
| not a push body | 400 with a JSON error |
| missing/expired/invalid token | 401; wrong audience, issuer or account: 403 |

Concurrent requests are micro-batched together by the scorer's ``Batch`` policy.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..app import App, Settings, load_app
from ..errors import ConfigError, PermanentError
from ..events import Event
from .messages import parse_push, to_event
from .oidc import AuthError, OidcVerifier
from .runtime import PushRuntime


def create_push_app(
    app: App, settings: Settings, *, verifier: OidcVerifier | None = None
) -> Starlette:
    """The ASGI push endpoint for ``app``.

    Args:
        app: the pipeline whose scorers and handlers receive the pushes.
        settings: store, registry, and the broker results are published to.
        verifier: checks the OIDC token; ``None`` accepts unauthenticated pushes
            (for a private network or local tests only).
    """
    runtime = PushRuntime(app, settings)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    async def push(request: Request) -> Response:
        if verifier is not None:
            try:
                verifier.verify(request.headers.get("authorization"))
            except AuthError as exc:
                return JSONResponse({"error": str(exc)}, status_code=exc.status)
        topic = request.path_params.get("topic")
        try:
            body = parse_push(await request.body())
            runtime.subscriptions_for(topic)
        except PermanentError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except ConfigError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        try:
            event = to_event(body, topic=topic or "")
        except PermanentError as exc:
            assert runtime.push is not None
            sub = runtime.subscriptions_for(topic)[0]
            raw = body.message.data.encode()
            bad = Event(id=body.message.messageId or "unknown", type="pubsub.message", data=raw)
            await runtime.push.dlq.add_events(topic or "", sub, [(bad, 1, exc.reason, str(exc))])
            return Response(status_code=204)
        outcome = await runtime.deliver(event, topic=topic, attempt=body.deliveryAttempt or 1)
        return Response(status_code=503 if outcome == "retry" else 204)

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok", "app": app.name})

    return Starlette(
        routes=[
            Route("/pubsub", push, methods=["POST"]),
            Route("/pubsub/{topic}", push, methods=["POST"]),
            Route("/healthz", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def from_env() -> Starlette:
    """Factory for uvicorn/Cloud Run: ``SCOREBUS_APP``, ``SCOREBUS_PUSH_AUDIENCE`` and
    ``SCOREBUS_PUSH_SERVICE_ACCOUNT`` (both or neither), plus the usual settings."""
    ref = os.environ.get("SCOREBUS_APP")
    if not ref:
        raise ConfigError("set SCOREBUS_APP=module:app for the push endpoint")
    audience = os.environ.get("SCOREBUS_PUSH_AUDIENCE")
    account = os.environ.get("SCOREBUS_PUSH_SERVICE_ACCOUNT")
    if bool(audience) != bool(account):
        raise ConfigError(
            "set both SCOREBUS_PUSH_AUDIENCE and SCOREBUS_PUSH_SERVICE_ACCOUNT, or neither"
        )
    verifier = OidcVerifier(audience, account) if audience and account else None
    return create_push_app(load_app(ref), Settings.from_env(), verifier=verifier)
