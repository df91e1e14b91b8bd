"""NATS JetStream joins the broker and worker contracts (the real server on 4222).

Every test gets its own subject prefix and stream (``?prefix=sbtest-<uuid>``) and
its own dead-letter store under ``tmp_path``; a broker built for the broker
contract deletes its stream (and so its consumers) when it closes, and the
streams handed to worker processes are deleted when the test session exits.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import uuid
from pathlib import Path
from typing import Any

import pytest
from tests.servers import require_server

_STREAMS: list[tuple[int, str]] = []


def nats_url(tmp_path: Path, **options: str) -> str:
    """A URL with a fresh prefix (and stream) on the local NATS (skips or fails if none)."""
    port = require_server("nats")
    prefix = f"sbtest-{uuid.uuid4().hex[:12]}"
    _STREAMS.append((port, prefix))
    query = {"prefix": prefix, "dlq": f"{tmp_path}/nats-dead-letters.db", **options}
    return f"nats://127.0.0.1:{port}?" + "&".join(f"{k}={v}" for k, v in query.items())


async def delete_stream(nc: Any, stream: str) -> None:
    """Delete ``stream`` (with its consumers) if it exists."""
    import nats.js.errors

    with contextlib.suppress(nats.js.errors.NotFoundError):
        await nc.jetstream().delete_stream(stream)


async def _delete_all(streams: list[tuple[int, str]]) -> None:
    import nats

    for port in {port for port, _ in streams}:
        nc = await nats.connect(
            f"nats://127.0.0.1:{port}", connect_timeout=1, allow_reconnect=False
        )
        try:
            for _, stream in (s for s in streams if s[0] == port):
                await delete_stream(nc, stream)
        finally:
            await nc.close()


def _sweep() -> None:
    with contextlib.suppress(Exception):  # the server may be gone at exit; nothing to keep
        asyncio.run(_delete_all(_STREAMS))


atexit.register(_sweep)


def _broker(tmp_path: Path) -> Any:
    from scorebus.brokers.nats import NatsBroker

    class ScratchNatsBroker(NatsBroker):
        async def close(self) -> None:
            nc = self._conn.current()
            if nc is not None:
                await delete_stream(nc, self.options.stream)
            await super().close()

    return ScratchNatsBroker(nats_url(tmp_path))


BROKER = pytest.param(_broker, id="nats")
URL = pytest.param(lambda tmp_path: nats_url(tmp_path), id="nats")
