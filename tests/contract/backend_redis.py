"""Redis Streams joins the broker and worker contracts (the real server on 6379).

Every test gets its own key prefix (``?prefix=sbtest-<uuid>``); a broker built
for the broker contract deletes its keys when it closes, and the prefixes handed
to worker processes are swept when the test session exits.
"""

from __future__ import annotations

import atexit
import uuid
from pathlib import Path
from typing import Any

import pytest
from tests.servers import require_server

_PREFIXES: list[tuple[int, str]] = []


def redis_url(**options: str) -> str:
    """A URL with a fresh key prefix on the local Redis (skips or fails if none)."""
    port = require_server("redis")
    prefix = f"sbtest-{uuid.uuid4().hex[:12]}"
    _PREFIXES.append((port, prefix))
    query = "&".join(f"{k}={v}" for k, v in {"prefix": prefix, **options}.items())
    return f"redis://127.0.0.1:{port}/0?{query}"


async def delete_prefix(client: Any, prefix: str) -> int:
    """Delete every key under ``prefix`` with an async redis-py client."""
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
    return int(await client.delete(*keys)) if keys else 0


def _sweep() -> None:
    import redis

    for port, prefix in _PREFIXES:
        try:
            client = redis.Redis(port=port, socket_connect_timeout=1)
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()
        except redis.RedisError:
            return


atexit.register(_sweep)


def _broker(tmp_path: Path) -> Any:
    from scorebus.brokers.redis import RedisBroker

    class ScratchRedisBroker(RedisBroker):
        async def close(self) -> None:
            await delete_prefix(self._link.client, self.options.prefix)
            await super().close()

    return ScratchRedisBroker(redis_url())


BROKER = pytest.param(_broker, id="redis")
URL = pytest.param(lambda tmp_path: redis_url(), id="redis")
