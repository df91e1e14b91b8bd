"""The worker: runs every scorer and handler of an app in one process.

Lifecycle: resolve and load models once, open sinks, start one loop per scorer
and handler (plus the outbox relay where results are both stored and
published), and run until stopped. On SIGTERM/SIGINT (or when idle for
``until_idle_s``) it stops pulling, finishes and acks the batches in flight, and
returns within ``shutdown_grace_s``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..brokers.base import Broker
from ..models.base import Model
from ..sinks import open_sink
from ..sinks.base import ResultStore, Sink
from .handlers import HandlerLoop
from .relay import OutboxRelay
from .report import WorkerReport, worker_report
from .scoring import ScoringLoop
from .spec import HandlerSpec, ScorerSpec
from .swap import Follower

log = logging.getLogger(__name__)

ModelResolver = Callable[[str], Model]
VersionResolver = Callable[[str], str]


def default_model_threads() -> int:
    # The model's own kernels are single-threaded per batch by default; on a small
    # machine one extra thread overlaps predict with the sink's commit.
    return max(1, min(4, (os.cpu_count() or 2) // 2))


class Worker:
    """Run scorers and handlers against one broker.

    Args:
        scorers: scorer specs (from ``App.specs()``).
        handlers: workflow handler specs.
        broker: an open broker; the worker does not close it.
        store_url: the default sink for scorers that name none.
        resolve_model: turns a model reference (``fraud@champion``) into a loaded model.
        startup: callables run once before the loops start (e.g. build a demo model).
        model_threads: size of the executor for features + predict + ``fn``.
        shutdown_grace_s: how long in-flight batches get to finish after a stop.
        resolve_version: ``ref -> version`` it points at now; with it, models given as
            ``NAME`` or ``NAME@ALIAS`` are followed and hot-swapped (``swap.py``).
            Without a ``resolve_model`` either, the default registry is used.
        model_poll_s: seconds between two looks at followed references; 0 disables.
    """

    def __init__(
        self,
        scorers: Sequence[ScorerSpec],
        handlers: Sequence[HandlerSpec] = (),
        *,
        broker: Broker,
        store_url: str,
        resolve_model: ModelResolver | None = None,
        startup: Sequence[Callable[[], Any]] = (),
        model_threads: int | None = None,
        shutdown_grace_s: float = 30.0,
        resolve_version: VersionResolver | None = None,
        model_poll_s: float = 5.0,
    ) -> None:
        self.scorers = list(scorers)
        self.handlers = list(handlers)
        self.broker = broker
        self.store_url = store_url
        self.resolve_model = resolve_model
        self.resolve_version = resolve_version
        self.model_poll_s = model_poll_s
        self.startup = list(startup)
        self.shutdown_grace_s = shutdown_grace_s
        self.stop_event = asyncio.Event()
        self._executor = ThreadPoolExecutor(
            model_threads or default_model_threads(), thread_name_prefix="scorebus-model"
        )
        self._sinks: dict[str, Sink] = {}
        self.scoring: list[ScoringLoop] = []
        self.handling: list[HandlerLoop] = []
        self.relays: list[OutboxRelay] = []
        self.followers: list[Follower] = []

    def request_stop(self) -> None:
        """Stop pulling; what is in flight is finished and acked."""
        if not self.stop_event.is_set():
            log.info("worker stopping: finishing in-flight batches")
            self.stop_event.set()

    def _load_model(self, source: Any) -> Model | None:
        if source is None:
            return None
        if isinstance(source, str):
            if self.resolve_model is None:
                from ..models.registry import open_registry

                return open_registry().load(source)
            return self.resolve_model(source)
        model: Model = source() if callable(source) and not hasattr(source, "predict") else source
        model.load()
        return model

    def _version_of(self, ref: str) -> str:
        if self.resolve_version is not None:
            return self.resolve_version(ref)
        from ..models.registry import Registry

        return Registry().resolve(ref).version

    def _follower(self, lp: ScoringLoop) -> Follower | None:
        if self.resolve_version is None and self.resolve_model is not None:
            return None  # a custom resolver without versions: nothing to follow with
        return lp.models.follower(
            self.broker,
            resolve_version=self._version_of,
            load=self._load_model,
            poll_s=self.model_poll_s,
        )

    async def _open_sink(self, url: str) -> Sink:
        if url not in self._sinks:
            sink = open_sink(url)
            await sink.open()
            self._sinks[url] = sink
        return self._sinks[url]

    async def _build(self) -> None:
        loop = asyncio.get_running_loop()
        for fn in self.startup:
            await loop.run_in_executor(self._executor, fn)
        models: dict[int, Model | None] = {}
        relay_sinks: set[str] = set()
        for spec in self.scorers:
            for source in (spec.model, spec.challenger):
                if id(source) not in models:
                    models[id(source)] = await loop.run_in_executor(
                        self._executor, self._load_model, source
                    )
            sink_url = (
                None
                if spec.sink is False
                else spec.sink
                if isinstance(spec.sink, str)
                else self.store_url
            )
            sink = await self._open_sink(sink_url) if sink_url else None
            use_outbox = (
                sink is not None and spec.publish is not None and isinstance(sink, ResultStore)
            )
            if use_outbox and sink_url:
                relay_sinks.add(sink_url)
            self.scoring.append(
                ScoringLoop(
                    spec,
                    self.broker,
                    sink,
                    models[id(spec.model)],
                    executor=self._executor,
                    stop=self.stop_event,
                    outbox=use_outbox,
                    challenger=models[id(spec.challenger)],
                )
            )
            follower = self._follower(self.scoring[-1])
            if follower is not None:
                self.followers.append(follower)
        for hspec in self.handlers:
            self.handling.append(
                HandlerLoop(hspec, self.broker, executor=self._executor, stop=self.stop_event)
            )
        for url in sorted(relay_sinks):
            store = self._sinks[url]
            assert isinstance(store, ResultStore)
            self.relays.append(OutboxRelay(store, self.broker))

    def _install_signals(self) -> list[signal.Signals]:
        if threading.current_thread() is not threading.main_thread():
            return []
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
            installed.append(sig)
        return installed

    def _idle_for(self) -> float:
        loops: list[ScoringLoop | HandlerLoop] = [*self.scoring, *self.handling]
        if any(lp.in_flight for lp in loops):
            return 0.0
        last = max((lp.metrics.last_activity for lp in loops), default=time.monotonic())
        return time.monotonic() - last

    async def _broker_idle(self) -> bool:
        """Nothing pending or leased on our subscriptions, by any worker.

        A worker killed mid-batch leaves leases that expire later; "until idle"
        means those too have been handled, not just this worker's own batches.
        """
        ours = {lp.spec.subscription for lp in self.scoring} | {
            lp.spec.subscription for lp in self.handling
        }
        try:
            stats = await self.broker.stats()
        except Exception:  # a broker whose stats are unavailable: trust local idleness
            return True
        return all(
            (s.pending or 0) <= 0 and s.in_flight <= 0 for s in stats if s.subscription in ours
        )

    async def _watch_idle(self, until_idle_s: float) -> None:
        while not self.stop_event.is_set():
            await asyncio.sleep(min(0.1, until_idle_s / 4))
            if self._idle_for() >= until_idle_s and await self._broker_idle():
                pending = 0
                for relay in self.relays:
                    pending += await relay.relay_once()
                if not pending:
                    self.request_stop()

    async def run(
        self, *, until_idle_s: float | None = None, handle_signals: bool = True
    ) -> WorkerReport:
        """Run until stopped (signal, :meth:`request_stop`, or idle) and report.

        ``handle_signals=False`` leaves SIGTERM/SIGINT to a host server (uvicorn).
        """
        started = time.monotonic()
        signals = self._install_signals() if handle_signals else []
        try:
            await self._build()
            # What is loaded by now (modules, models, sinks) lives as long as the
            # worker: move it out of the cyclic collector's view, whose full passes
            # otherwise walk it again every few batches (~20% of the CPU per event).
            gc.collect()
            gc.freeze()
            tasks = [asyncio.create_task(lp.run()) for lp in self.scoring]
            tasks += [asyncio.create_task(lp.run()) for lp in self.handling]
            # The relays stop only after the loops: the last batches' outbox rows
            # must go out before the worker exits.
            relays_stop = asyncio.Event()
            relays = [asyncio.create_task(r.run(relays_stop)) for r in self.relays]
            # Followers only swap models between batches; they stop with the pulling.
            followers = [asyncio.create_task(f.run(self.stop_event)) for f in self.followers]
            if until_idle_s is not None:
                tasks.append(asyncio.create_task(self._watch_idle(until_idle_s)))
            try:
                await self._supervise(tasks)
            finally:
                for task in followers:
                    task.cancel()
                relays_stop.set()
                await asyncio.gather(*relays, *followers, return_exceptions=True)
        finally:
            loop = asyncio.get_running_loop()
            for sig in signals:
                loop.remove_signal_handler(sig)
            for sink in self._sinks.values():
                await sink.close()
            self._executor.shutdown(wait=False, cancel_futures=True)
        return self._report(time.monotonic() - started)

    async def _supervise(self, tasks: list[asyncio.Task[None]]) -> None:
        stop_wait = asyncio.create_task(self.stop_event.wait())
        done, _ = await asyncio.wait([*tasks, stop_wait], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stop_wait and task.exception() is not None:
                self.request_stop()
        # Loops drain themselves once stop is set; give them the grace period.
        remaining = [t for t in tasks if not t.done()]
        if remaining:
            _, late = await asyncio.wait(remaining, timeout=self.shutdown_grace_s)
            for task in late:
                task.cancel()
            if late:
                log.warning("shutdown deadline passed: %d loops cancelled", len(late))
                await asyncio.gather(*late, return_exceptions=True)
        stop_wait.cancel()
        for lp in self.scoring:
            if lp.fatal is not None:
                raise lp.fatal
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    def _report(self, seconds: float) -> WorkerReport:
        return worker_report(self.scoring, self.handling, self.relays, seconds)
