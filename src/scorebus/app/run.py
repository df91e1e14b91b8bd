"""Run an app: in this process, or as N competing worker processes.

Several processes on one subscription is how scorebus uses more than one core:
each process has its own GIL, and the broker hands each message to one of them.
Left unset, the number of processes is one per usable core (at most
``MAX_DEFAULT_WORKERS``) and each runs ``cores // workers`` predicts at once, so
the machine is used and not oversubscribed; ``--workers`` / ``SCOREBUS_WORKERS``
and ``--model-threads`` / ``SCOREBUS_MODEL_THREADS`` override them.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import msgspec

from ..brokers import open_broker
from ..errors import ScorebusError
from ..models.base import Model
from ..models.registry import open_registry
from ..runtime.report import WorkerReport
from ..runtime.worker import Worker
from .app import App
from .settings import Settings

log = logging.getLogger(__name__)

MAX_DEFAULT_WORKERS = 8  # past this, processes mostly queue on the broker and store


def usable_cores() -> int:
    """CPUs this process may run on: its affinity mask (a container's cpuset), else all."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # no sched_getaffinity (macOS, Windows)
        return os.cpu_count() or 1


def default_workers(broker_url: str) -> int:
    """One worker process per usable core, at most ``MAX_DEFAULT_WORKERS``.

    An in-process broker (``memory://``) cannot be shared: one process.
    """
    if broker_url.startswith("memory://"):
        return 1
    return max(1, min(MAX_DEFAULT_WORKERS, usable_cores()))


def default_model_threads(workers: int) -> int:
    """Predict threads per worker process: the cores shared out, at least one."""
    return max(1, usable_cores() // max(1, workers))


def plan_workers(settings: Settings) -> tuple[int, int]:
    """``(workers, model threads per worker)``: the settings where given, else the defaults."""
    workers = settings.workers or default_workers(settings.broker)
    return workers, settings.model_threads or default_model_threads(workers)


def model_resolver(settings: Settings) -> Any:
    registry = open_registry(settings.registry)  # one per worker: a remote one keeps its client

    def resolve(ref: str) -> Model:
        return registry.load(ref, trust=settings.trust_models)

    return resolve


def version_resolver(settings: Settings) -> Any:
    """``ref -> version`` it points at now: how the worker follows a model alias."""

    registry = open_registry(settings.registry)

    def resolve(ref: str) -> str:
        return str(registry.resolve(ref).version)

    return resolve


def _bind(fn: Callable[..., Any], settings: Settings) -> Callable[[], Any]:
    """Startup hooks may take the process settings as their one argument."""
    try:
        wants = len(inspect.signature(fn).parameters) >= 1
    except (TypeError, ValueError):
        wants = False
    return functools.partial(fn, settings) if wants else fn


def startup_hooks(app: App, settings: Settings) -> list[Callable[[], Any]]:
    """The app's startup hooks, with the settings bound for those that take them."""
    return [_bind(fn, settings) for fn in app.startup]


async def run_app(
    app: App,
    settings: Settings,
    *,
    until_idle_s: float | None = None,
    model_threads: int | None = None,
    shutdown_grace_s: float = 30.0,
) -> WorkerReport:
    """Run every scorer and handler of ``app`` in this process until stopped.

    ``model_threads`` (default: ``settings.model_threads``, else every usable core
    for this one process) is how many batches are predicted at once.
    """
    if model_threads is None:
        model_threads = settings.model_threads or default_model_threads(settings.workers or 1)
    async with open_broker(settings.broker) as broker:
        scorers, handlers = app.scorers, app.handlers
        if settings.ack_deadline_s is not None:
            scorers = [replace(s, ack_deadline_s=settings.ack_deadline_s) for s in scorers]
            handlers = [replace(h, ack_deadline_s=settings.ack_deadline_s) for h in handlers]
        worker = Worker(
            scorers,
            handlers,
            broker=broker,
            store_url=settings.store,
            resolve_model=model_resolver(settings),
            resolve_version=version_resolver(settings),
            model_poll_s=settings.model_poll_s,
            startup=startup_hooks(app, settings),
            model_threads=model_threads,
            shutdown_grace_s=shutdown_grace_s,
        )
        return await worker.run(until_idle_s=until_idle_s)


class WorkerPool:
    """``workers`` processes of one app (``python -m scorebus.app.child``).

    ``stop()`` sends SIGTERM so each child finishes and acks its in-flight
    batches; ``wait()`` kills a child that outlives ``grace_s`` after that (its
    leases expire and the broker redelivers: nothing is lost).
    """

    def __init__(
        self,
        app_ref: str,
        settings: Settings,
        *,
        workers: int,
        until_idle_s: float | None = None,
        grace_s: float = 30.0,
    ) -> None:
        self.grace_s = grace_s
        self._spec = msgspec.json.encode(
            {
                "app": app_ref,
                "broker": settings.broker,
                "store": settings.store,
                "registry": str(settings.registry),
                "trust_models": settings.trust_models,
                "ack_deadline_s": settings.ack_deadline_s,
                "model_poll_s": settings.model_poll_s,
                "model_threads": settings.model_threads or default_model_threads(workers),
                "until_idle_s": until_idle_s,
                "grace_s": grace_s,
            }
        ).decode()
        self.workers = workers
        self.procs: list[subprocess.Popen[bytes]] = []
        self.failed: list[int] = []  # exit codes of children that ended in an error
        self._stopped_at: float | None = None

    def start(self) -> WorkerPool:
        cmd = [sys.executable, "-m", "scorebus.app.child", self._spec]
        self.procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE) for _ in range(self.workers)]
        return self

    def alive(self) -> int:
        return sum(p.poll() is None for p in self.procs)

    def stop(self) -> None:
        if self._stopped_at is None:
            self._stopped_at = time.monotonic()
        for p in self.procs:
            if p.poll() is None:
                p.terminate()

    def wait(self) -> list[WorkerReport]:
        while self.alive():
            if self._stopped_at is not None and time.monotonic() - self._stopped_at > self.grace_s:
                for p in self.procs:
                    if p.poll() is None:
                        p.kill()
            time.sleep(0.05)
        reports = []
        for p in self.procs:
            out = b""
            if p.stdout is not None:
                out = p.stdout.read()
                p.stdout.close()
            lines = out.strip().splitlines()
            if p.returncode == 0 and lines:
                reports.append(msgspec.json.decode(lines[-1], type=WorkerReport))
            else:
                log.warning("worker process %d exited with code %s", p.pid, p.returncode)
                if p.returncode > 0:
                    self.failed.append(p.returncode)
        return reports


def run_processes(
    app_ref: str,
    settings: Settings,
    *,
    workers: int,
    until_idle_s: float | None = None,
    grace_s: float = 30.0,
) -> list[WorkerReport]:
    """Run a :class:`WorkerPool` in the foreground; SIGINT/SIGTERM stop it gracefully.

    Raises:
        ScorebusError: a worker process ended in an error (its own message is on stderr).
    """
    pool = WorkerPool(
        app_ref, settings, workers=workers, until_idle_s=until_idle_s, grace_s=grace_s
    )
    previous = {
        sig: signal.signal(sig, lambda signum, frame: pool.stop())
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        reports = pool.start().wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if pool.failed:
        raise ScorebusError(
            f"{len(pool.failed)} of {workers} worker process(es) failed "
            f"(exit code {pool.failed[0]}); the error is above"
        )
    return reports


def merge(reports: Sequence[WorkerReport]) -> WorkerReport:
    total = WorkerReport()
    for r in reports:
        total.scored += r.scored
        total.dead_lettered += r.dead_lettered
        total.retried += r.retried
        total.handled += r.handled
        total.relayed += r.relayed
        total.seconds = max(total.seconds, r.seconds)
    return total
