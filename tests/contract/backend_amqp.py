"""RabbitMQ joins the contract suites (server on 127.0.0.1:5672, guest/guest).

Each test gets its own ``prefix`` (``sbtest-<uuid>``), so its exchanges and queues
never meet another test's; the broker deletes its whole namespace when the test
closes it. Worker-contract URLs are cleaned up when the test session ends,
because the workers and the test each open their own broker on the URL.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import uuid
from pathlib import Path

import pytest
from tests.servers import require_server

from scorebus.brokers.amqp import AmqpBroker

_URLS: list[str] = []


def amqp_url() -> str:
    port = require_server("rabbitmq")
    return f"amqp://guest:guest@127.0.0.1:{port}/?prefix=sbtest-{uuid.uuid4().hex[:12]}"


class ThrowawayBroker(AmqpBroker):
    """The real broker, deleting everything under its prefix when closed."""

    async def close(self) -> None:
        try:
            await self.delete_namespace()
        finally:
            await super().close()


def _broker(tmp_path: Path) -> AmqpBroker:
    return ThrowawayBroker(amqp_url())


def _url(tmp_path: Path) -> str:
    url = amqp_url()
    _URLS.append(url)
    return url


@atexit.register
def _delete_worker_namespaces() -> None:
    async def run() -> None:
        for url in _URLS:
            async with AmqpBroker(url) as broker:
                await broker.delete_namespace()

    if _URLS:
        with contextlib.suppress(Exception):
            asyncio.run(run())


BROKER = pytest.param(_broker, id="amqp")
URL = pytest.param(_url, id="amqp")
