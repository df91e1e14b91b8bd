"""Hot swap: follow a model reference, smoke-test each new version, swap between batches.

A scorer's model given as a registry reference without a fixed version
(``fraud``, ``fraud@champion``, ``fraud@latest``) is *followed*: every
``poll_s`` the worker resolves the reference in a thread, and when it points at
a new version it loads that version (in a thread), smoke-tests it on the last
events the scorer saw, and either swaps it in or refuses it with the reason. A
fixed version (``fraud@3``) or a ``Model`` object is never swapped.

The swap itself is one assignment on the event loop. Each batch takes its
model object when it is dispatched and keeps it to the end, so a batch is
scored entirely by one version, its results record that version, and nothing is
nacked or dropped because of a swap. Each swap or refusal is announced as a
``model.swapped`` / ``model.refused`` event (data: scorer, role, model,
from_version, to_version, reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..models.base import Model, ModelRef

log = logging.getLogger(__name__)

SAMPLE_SIZE = 64  # recent events a new version is smoke-tested on
SWAPPED = "model.swapped"
REFUSED = "model.refused"

Predict = Callable[[Model, list[Any]], Any]
Finish = Callable[[Model, list[Any], Any], list[bytes]]
Check = Callable[[Model, Model, list[Any]], str | None]
Announce = Callable[[str, dict[str, str]], Awaitable[None]]


@dataclass
class ModelSlot:
    """One model of a scorer as it is now.

    Attributes:
        role: ``"main"``, ``"shadow"`` or ``"canary"``.
        model: the object the next batch takes.
        ref: the followed registry reference; ``None`` when the model is pinned.
        refused: the version last refused, not tried again until the reference moves.
        swaps: versions swapped in since the worker started.
        failures: batches a challenger failed (the main results are unaffected).
    """

    role: str
    model: Model
    ref: str | None = None
    refused: str | None = None
    swaps: int = 0
    failures: int = 0

    @property
    def version(self) -> str:
        return str(self.model.version)


def followed_ref(source: Any) -> str | None:
    """The reference to follow for a model source, or ``None`` if it is pinned.

    ``fraud`` and ``fraud@champion`` are followed; ``fraud@3``, a ``Model`` and
    a factory are not.
    """
    if not isinstance(source, str):
        return None
    ref = ModelRef.parse(source)
    if ref.selector is not None and ref.selector.isdigit():
        return None
    return str(ref)


def _width(arr: np.ndarray) -> str:
    return "one value per event" if arr.ndim == 1 else f"rows of shape {arr.shape[1:]}"


def smoke_test(
    candidate: Model, current: Model, sample: list[Any], predict: Predict, finish: Finish
) -> str | None:
    """Why ``candidate`` must not replace ``current``, or ``None`` if it may.

    On ``sample`` (validated data of recent events; with none, loading was the
    whole test) the candidate must return one finite row per event, rows of the
    same shape as the current model's, and the scorer's function must accept them.

    Args:
        candidate: the new version, loaded.
        current: the version in use.
        sample: recent events' validated data.
        predict: ``(model, data) -> predictions``, features included.
        finish: ``(model, data, predictions) -> encoded results`` (the scorer's ``fn``).

    Returns:
        The reason for refusing, or ``None``.
    """
    n = len(sample)
    if n == 0:
        return None
    try:
        got = np.asarray(predict(candidate, sample))
    except Exception as exc:
        return f"predict failed on {n} recent events: {type(exc).__name__}: {exc}"
    if got.ndim == 0 or got.shape[0] != n:
        return f"predict returned shape {got.shape} for {n} events; expected one row per event"
    if not (np.issubdtype(got.dtype, np.number) or got.dtype == np.bool_):
        return f"predict returned {got.dtype} values; expected numbers"
    bad = int((~np.isfinite(got.reshape(n, -1))).any(axis=1).sum())
    if bad:
        return f"predict returned NaN or infinite values for {bad} of {n} recent events"
    try:
        want = np.asarray(predict(current, sample))
    except Exception:  # the current version's own trouble is not the candidate's fault
        want = got
    if want.shape[1:] != got.shape[1:]:
        return (
            f"predict returns {_width(got)}; the current version {current.version} "
            f"returns {_width(want)}"
        )
    try:
        finish(candidate, sample, got)
    except Exception as exc:
        return f"the scorer's function rejected the output: {type(exc).__name__}: {exc}"
    return None


class Follower:
    """Polls the followed references of one scorer's models and swaps new versions in.

    Args:
        scorer: the scorer's name, for logs and events.
        slots: the scorer's models; only those with a ``ref`` are followed.
        resolve_version: ``ref -> version`` it points at now (blocking, run in a thread).
        load: ``NAME@VERSION -> loaded model`` (blocking, run in a thread).
        check: ``(candidate, current, sample) -> reason or None`` (blocking, in a thread).
        sample: the recent events' data, read on the event loop.
        announce: publishes ``(type, data)``; its failures are logged, never raised.
        poll_s: seconds between two looks at the registry.
    """

    def __init__(
        self,
        scorer: str,
        slots: list[ModelSlot],
        *,
        resolve_version: Callable[[str], str],
        load: Callable[[str], Model],
        check: Check,
        sample: Callable[[], list[Any]],
        announce: Announce,
        poll_s: float,
    ) -> None:
        self.scorer = scorer
        self.slots = [s for s in slots if s.ref is not None]
        self.resolve_version = resolve_version
        self.load = load
        self.check = check
        self.sample = sample
        self.announce = announce
        self.poll_s = poll_s
        self._errors: dict[str, str] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll_s)
            if not stop.is_set():
                await self.poll()

    async def poll(self) -> None:
        """Look once at every followed reference; swap or refuse what moved."""
        for slot in self.slots:
            await self._follow(slot)

    async def _follow(self, slot: ModelSlot) -> None:
        assert slot.ref is not None
        try:
            version = str(await asyncio.to_thread(self.resolve_version, slot.ref))
        except Exception as exc:
            # A registry that is briefly away keeps the current model; say so once.
            if self._errors.get(slot.role) != str(exc):
                log.warning(
                    "scorer=%s cannot resolve %s (keeping version %s): %s",
                    self.scorer,
                    slot.ref,
                    slot.version,
                    exc,
                )
            self._errors[slot.role] = str(exc)
            return
        self._errors.pop(slot.role, None)
        if version == slot.version:
            slot.refused = None  # the reference came back: a later move is tried afresh
            return
        if version == slot.refused:
            return
        pinned = f"{ModelRef.parse(slot.ref).name}@{version}"
        sample = self.sample()
        reason: str | None
        try:
            candidate = await asyncio.to_thread(self.load, pinned)
        except Exception as exc:
            reason = f"load failed: {type(exc).__name__}: {exc}"
        else:
            reason = await asyncio.to_thread(self.check, candidate, slot.model, sample)
        old = slot.version
        if reason is None:
            slot.model = candidate
            slot.swaps += 1
            log.info(
                "scorer=%s %s model %s swapped %s -> %s (smoke-tested on %d events)",
                self.scorer,
                slot.role,
                candidate.name,
                old,
                version,
                len(sample),
            )
        else:
            slot.refused = version
            log.warning(
                "scorer=%s %s model %s refused version %s, keeping %s: %s",
                self.scorer,
                slot.role,
                slot.model.name,
                version,
                old,
                reason,
            )
        data = {
            "scorer": self.scorer,
            "role": slot.role,
            "model": slot.model.name,
            "from_version": old,
            "to_version": version,
            "reason": reason or "",
        }
        try:
            await self.announce(REFUSED if reason else SWAPPED, data)
        except Exception as exc:
            log.warning("scorer=%s could not publish the model event: %s", self.scorer, exc)
