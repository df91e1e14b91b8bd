"""An app's worker fed by pushes instead of pulls.

``PushRuntime`` runs the ordinary ``Worker`` over a ``PushBroker`` on the
current event loop (the ASGI push endpoint); ``ThreadedPushRuntime`` runs the
same on a background thread's loop for functions-framework, whose handlers are
plain functions called on request threads. Either way concurrent requests are
micro-batched together and each answer waits for the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from pathlib import Path
from typing import Any

from ..app import App, Settings
from ..app.run import model_resolver, startup_hooks
from ..app.settings import STATE_DIR
from ..brokers import open_broker
from ..brokers.base import Broker
from ..brokers.dlq_store import DeadLetterStore
from ..brokers.push import Outcome, PushBroker
from ..errors import ConfigError
from ..events import Event
from ..runtime.worker import Worker

WORST: dict[Outcome, int] = {"ok": 0, "dead": 1, "retry": 2}


class PushRuntime:
    """Scorers and handlers of ``app`` behind :meth:`deliver`.

    Args:
        app: the pipeline.
        settings: ``store`` is where results go; ``broker``, if not the embedded
            default, is where result and workflow events are published.
        dlq_path: the dead-letter store file (``scorebus dlq --broker push://`` reads it).
    """

    def __init__(self, app: App, settings: Settings, *, dlq_path: str | Path | None = None) -> None:
        self.app = app
        self.settings = settings
        # Beside a local registry; in the state folder when the registry is remote (gs://).
        state = settings.registry.parent if isinstance(settings.registry, Path) else STATE_DIR
        self.dlq_path = Path(dlq_path or Path(state) / "dead_letters.db")
        self.push: PushBroker | None = None
        self._publish_to: Broker | None = None
        self._task: asyncio.Task[Any] | None = None
        self._worker: Worker | None = None
        self.by_topic: dict[str, list[str]] = {}
        for topic, sub in app.subscriptions():
            self.by_topic.setdefault(topic, []).append(sub)

    async def start(self, *, timeout_s: float = 120.0) -> None:
        if self.settings.broker and not self.settings.broker.startswith("sqlite:"):
            self._publish_to = open_broker(self.settings.broker)
        self.push = PushBroker(dlq=DeadLetterStore(self.dlq_path), publish_to=self._publish_to)
        self._worker = Worker(
            self.app.scorers,
            self.app.handlers,
            broker=self.push,
            store_url=self.settings.store,
            resolve_model=model_resolver(self.settings),
            startup=startup_hooks(self.app, self.settings),
        )
        self._task = asyncio.create_task(self._worker.run(handle_signals=False))
        wanted = {sub for subs in self.by_topic.values() for sub in subs}
        deadline = time.monotonic() + timeout_s
        while not wanted <= set(self.push.subs):
            if self._task.done():
                self._task.result()  # raises the start-up error
            if time.monotonic() > deadline:
                raise ConfigError(f"app {self.app.name!r} did not start within {timeout_s} s")
            await asyncio.sleep(0.01)

    def subscriptions_for(self, topic: str | None) -> list[str]:
        """Where an event from ``topic`` goes; with one topic in the app, everything goes there."""
        if topic and topic in self.by_topic:
            return self.by_topic[topic]
        if len(self.by_topic) == 1:
            return next(iter(self.by_topic.values()))
        raise ConfigError(
            f"cannot tell which scorer an event from topic {topic!r} is for; the app "
            f"subscribes to {sorted(self.by_topic)}"
        )

    async def deliver(self, event: Event, *, topic: str | None = None, attempt: int = 1) -> Outcome:
        """Score/handle one event on every subscription of its topic; the worst outcome wins."""
        assert self.push is not None, "start() first"
        subs = self.subscriptions_for(topic)
        outcomes = await asyncio.gather(
            *(self.push.deliver(sub, event, attempt=attempt) for sub in subs)
        )
        return max(outcomes, key=WORST.__getitem__)

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.request_stop()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        if self.push is not None:
            await self.push.close()
        if self._publish_to is not None:
            await self._publish_to.close()


class ThreadedPushRuntime:
    """A :class:`PushRuntime` on its own thread, callable from synchronous code."""

    def __init__(self, runtime: PushRuntime) -> None:
        self.runtime = runtime
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="scorebus-push", daemon=True
        )
        self._thread.start()
        asyncio.run_coroutine_threadsafe(runtime.start(), self._loop).result()

    def deliver(
        self, event: Event, *, topic: str | None = None, attempt: int = 1, timeout_s: float = 540.0
    ) -> Outcome:
        future = asyncio.run_coroutine_threadsafe(
            self.runtime.deliver(event, topic=topic, attempt=attempt), self._loop
        )
        return future.result(timeout_s)

    def submit(self, coro: Any) -> Any:
        """Run a coroutine on the runtime's loop; returns a concurrent future."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runtime.stop(), self._loop).result(60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
