"""The scoring loop: pull -> decode/validate -> micro-batch -> model -> fn -> sink -> ack.

One loop per scorer. Pulling and batching happen on the event loop; features,
``predict`` and the user's ``fn`` run together in a bounded executor (one hop
per batch); the sink commits, and only then are the deliveries acked. Every
delivery pulled is settled exactly once: acked, nacked with backoff, or
dead-lettered with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Executor

import numpy as np

from ..brokers.base import Broker, Delivery, Subscription
from ..errors import ConfigError, PermanentError, TransientError, reason_of
from ..models.base import Model
from ..sinks.base import Sink
from .batching import BatchController
from .flow import FlowController
from .metrics import LoopMetrics
from .results import Item, keep_leases, outbox_entries, result_events, score_results
from .rollout import BatchModels, ModelSet, Scored, model_id, shadow_results
from .settle import Settler
from .spec import ScorerSpec
from .swap import SAMPLE_SIZE

log = logging.getLogger(__name__)

_LEASE_MARGIN_S = 2.0  # a batch is committed at least this long before its first lease ends


class ScoringLoop:
    """Runs one :class:`ScorerSpec` until ``stop`` is set, then drains.

    Args:
        spec: the scorer.
        broker: where the subscription lives and results are published.
        sink: where results are committed (``None`` for publish-only scorers).
        model: the loaded model, or ``None`` for model-less scorers.
        executor: the bounded pool for features + predict + ``fn``.
        outbox: commit published results through the sink's outbox (relayed later).
        challenger: the loaded shadow or canary model of ``spec``, if it has one.
    """

    def __init__(
        self,
        spec: ScorerSpec,
        broker: Broker,
        sink: Sink | None,
        model: Model | None,
        *,
        executor: Executor,
        stop: asyncio.Event,
        outbox: bool = False,
        max_batches_in_flight: int = 4,
        challenger: Model | None = None,
    ) -> None:
        self.spec = spec
        self.broker = broker
        self.sink = sink
        # The main model and the challenger, each swapped between batches (swap.py).
        self.models = ModelSet(spec, model, challenger)
        self.executor = executor
        self.stop = stop
        self.outbox = outbox and spec.publish is not None and sink is not None
        self.flow = FlowController(spec.flow)
        self.metrics = LoopMetrics()
        self._slots = asyncio.Semaphore(max_batches_in_flight)
        self.batcher = BatchController(spec.batch)
        self._tasks: set[asyncio.Task[None]] = set()
        self.sub: Subscription | None = None
        self._settle: Settler | None = None
        self._down_for = 0.0
        self.fatal: ConfigError | None = None

    @property
    def in_flight(self) -> int:
        return self.flow.messages

    @property
    def model(self) -> Model | None:
        """The main model the next batch takes."""
        return self.models.model

    async def run(self) -> None:
        spec = self.spec
        self.sub = await self.broker.subscription(
            spec.topic, spec.subscription, ack_deadline_s=spec.ack_deadline_s
        )
        self._settle = Settler(self.sub, spec.retry, self.metrics, scorer=spec.name)
        batcher = self.batcher
        pending: list[Item] = []
        opened = 0.0
        while not self.stop.is_set():
            if self.flow.room() == 0:
                await self._wait_flow()
                continue
            timeout = self._pull_timeout(pending, opened) if pending else 0.1
            want = min(self.flow.room(), spec.batch.max_size - len(pending))
            try:
                deliveries = await self.sub.pull(want, timeout) if want else []
            except TransientError as exc:
                await self._broker_down(exc)
                continue
            self._down_for = 0.0
            now = time.monotonic()
            batcher.arrived(len(deliveries), now)
            if deliveries:
                self.metrics.touch()
                good = await self._admit(deliveries)
                if good and not pending:
                    opened = now
                pending.extend(good)
            if pending and (
                batcher.should_close(len(pending), now - opened, len(self._tasks))
                or self._lease_closing(pending)
            ):
                await self._dispatch(pending)
                pending = []
        if pending:
            await self._dispatch(pending)
        await self.drain()

    async def _broker_down(self, exc: TransientError) -> None:
        # Keep the worker alive through a broker outage: back off and pull again.
        # Batches already dispatched still commit; their acks may fail and the
        # broker then redelivers them, which the idempotent sink absorbs.
        self._down_for = min(max(self._down_for * 2, 0.2), 5.0)
        log.warning(
            "scorer=%s broker unavailable, retrying in %.1f s: %s",
            self.spec.name,
            self._down_for,
            exc,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), self._down_for)

    async def _wait_flow(self) -> None:
        waiter = asyncio.ensure_future(self.flow.wait())
        stopper = asyncio.ensure_future(self.stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        stopper.cancel()

    async def drain(self) -> None:
        """Wait for every dispatched batch to settle."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _lease_closing(self, items: list[Item]) -> bool:
        # Close the batch early when the first lease in it is about to run out:
        # a result committed after its lease expired would be redelivered.
        return items[0][0].remaining_s() < _LEASE_MARGIN_S + self.batcher.cost(len(items))

    def _pull_timeout(self, pending: list[Item], opened: float) -> float:
        # What the batcher would wait for, and never past the point where the
        # first lease in the batch obliges it to close.
        wait = self.batcher.wait_s(len(pending), time.monotonic() - opened, len(self._tasks))
        lease = pending[0][0].remaining_s() - _LEASE_MARGIN_S - self.batcher.cost(len(pending))
        return max(0.0, min(wait, lease))

    async def _admit(self, deliveries: list[Delivery]) -> list[Item]:
        """Account for, decode and validate pulled deliveries; dead-letter the bad ones."""
        assert self._settle is not None
        self.flow.acquire(len(deliveries), sum(d.size for d in deliveries))
        decode = self.spec.schema.decode
        max_attempts = self.spec.retry.max_attempts
        now = time.time()
        good: list[Item] = []
        bad: list[tuple[Delivery, str, str]] = []
        for d in deliveries:
            if d.attempt > max_attempts:
                bad.append((d, "max_attempts", f"delivered {d.attempt} times without settling"))
                continue
            try:
                good.append((d, decode(d.event.data), now))
            except PermanentError as exc:
                bad.append((d, exc.reason, str(exc)))
        # The last events seen: what a new model version is smoke-tested on
        # (only the tail of a large batch can stay in the window).
        self.models.recent.extend(x for _, x, _ in good[-SAMPLE_SIZE:])
        if bad:
            await self._settle.dead_letter(bad)
            self.flow.release(len(bad), sum(d.size for d, _, _ in bad))
        return good

    async def _dispatch(self, items: list[Item]) -> None:
        # The models are taken here, in dispatch order: a swap applies to the next
        # batch, so results stay in version order and a batch has one version.
        for part, models in self.models.split(items, lambda item: item[0].event.id):
            await self._slots.acquire()
            task = asyncio.create_task(self._process(part, models))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _process(self, items: list[Item], models: BatchModels) -> None:
        assert self.sub is not None
        keeper = asyncio.create_task(  # noqa: RUF006
            keep_leases(
                self.sub, [d for d, _, _ in items], self.spec.ack_deadline_s, self.spec.name
            )
        )
        started = time.monotonic()
        try:
            await self._score_and_commit(items, models)
            self.batcher.finished(len(items), time.monotonic() - started)
        except TransientError as exc:
            # Settling (ack, nack, dead-letter) failed because the broker is away:
            # the leases run out and the broker redelivers; results already
            # committed are kept once by the idempotent sink.
            self._log_failure([d for d, _, _ in items], exc)
        finally:
            keeper.cancel()
            self._slots.release()
            self.flow.release(len(items), sum(d.size for d, _, _ in items))

    async def _score_and_commit(self, items: list[Item], models: BatchModels) -> None:
        assert self._settle is not None
        loop = asyncio.get_running_loop()
        deliveries = [d for d, _, _ in items]
        try:
            scored = await loop.run_in_executor(
                self.executor, self.models.score, models, [x for _, x, _ in items]
            )
        except Exception as exc:
            if models.canary:
                # A failing canary never costs an event: the main model rescores them.
                self._challenger_failed(deliveries, models.model, exc)
                await self._score_and_commit(items, BatchModels(self.model))
                return
            if isinstance(exc, TransientError):
                self._log_failure(deliveries, exc, models.model)
                await self._settle.retry(deliveries, exc)
                return
            if len(items) > 1:
                # One bad event must not sink the batch: score them one by one.
                for item in items:
                    await self._score_and_commit([item], models)
                return
            self._log_failure(deliveries, exc, models.model)
            if isinstance(exc, PermanentError):
                await self._settle.dead_letter([(deliveries[0], exc.reason, str(exc))])
            else:
                await self._settle.retry(deliveries, exc)
            return
        if scored.shadow_error is not None:
            self._challenger_failed(deliveries, models.shadow, scored.shadow_error)
        try:
            await self._commit(items, scored, models)
        except ConfigError as exc:
            # A misconfigured sink (missing table, no permission) fails every event
            # alike: stop the worker with the reason instead of dead-lettering them
            # all. The batch stays leased and is redelivered after the fix.
            self._log_failure(deliveries, exc, models.model)
            self.fatal = exc
            self.stop.set()
            return
        except Exception as exc:
            self._log_failure(deliveries, exc, models.model)
            await self._settle.retry(deliveries, exc)
            return
        await self._settle.ack(deliveries)
        now = time.time()
        self.metrics.record_batch(
            len(items), np.fromiter(((now - t) * 1000 for _, _, t in items), float, len(items))
        )

    async def _commit(self, items: list[Item], scored: Scored, models: BatchModels) -> None:
        spec = self.spec
        now = time.time()
        outputs = scored.outputs
        # The model that scored this batch, read after it answered: a remote
        # model's version is the deployment that answered.
        model = model_id(models.model)
        results = score_results(spec.name, items, outputs, model, now)
        if scored.shadow is not None:
            results += shadow_results(spec.name, items, scored, models.shadow, now)
        events = (
            result_events(spec.name, spec.result_type, items, outputs, model)
            if spec.publish
            else []
        )
        if self.sink is not None:
            outbox = outbox_entries(spec.name, spec.publish or "", events) if self.outbox else []
            await self.sink.write(results, outbox)
        if events and not self.outbox:
            await self.broker.publish(spec.publish or "", events)

    def _challenger_failed(
        self, deliveries: Sequence[Delivery], model: Model | None, exc: BaseException
    ) -> None:
        slot = self.models.challenger
        if slot is not None:
            slot.failures += 1
        log.warning(
            "scorer=%s %s model=%s@%s events=%d first_event=%s failed (main results unaffected):"
            " %s: %s",
            self.spec.name,
            slot.role if slot is not None else "challenger",
            *model_id(model),
            len(deliveries),
            deliveries[0].event.id,
            reason_of(exc),
            exc,
        )

    def _log_failure(
        self, deliveries: Sequence[Delivery], exc: BaseException, model: Model | None = None
    ) -> None:
        log.warning(
            "scorer=%s model=%s@%s events=%d first_event=%s attempt=%d failed: %s: %s",
            self.spec.name,
            *model_id(model or self.model),
            len(deliveries),
            deliveries[0].event.id,
            deliveries[0].attempt,
            reason_of(exc),
            exc,
        )
