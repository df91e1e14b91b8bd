"""Shadow and canary challengers, the smoke test and the follower's rules, over the
in-memory broker and a real SQLite results store."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from scorebus import Canary
from scorebus.brokers.memory import MemoryBroker
from scorebus.errors import ConfigError
from scorebus.events import Event, Schema
from scorebus.models.base import Signature
from scorebus.runtime.config import Batch, RetryPolicy
from scorebus.runtime.rollout import ModelSet, canary_pick
from scorebus.runtime.spec import ScorerSpec
from scorebus.runtime.swap import Follower, ModelSlot, followed_ref, smoke_test
from scorebus.runtime.worker import Worker, WorkerReport
from scorebus.sinks.sqlite import SqliteResultStore


class Tx(msgspec.Struct):
    card: str
    amount: float
    count: int


class Linear:
    """score = a * amount + b * count; ``width`` copies per row; ``fail`` raises."""

    signature = Signature(inputs=("amount", "count"), outputs=("score",))

    def __init__(
        self, version: str, a: float = 1.0, b: float = 0.0, *, width: int = 1, fail: bool = False
    ) -> None:
        self.name = "linear"
        self.version = version
        self.a, self.b, self.width, self.fail = a, b, width, fail

    def load(self) -> None:
        pass

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if self.fail:
            raise ValueError(f"challenger {self.version} is broken")
        y = batch[:, 0] * self.a + batch[:, 1] * self.b
        return y if self.width == 1 else np.repeat(y[:, None], self.width, axis=1)


def results_fn(events: list[Tx], scores: np.ndarray) -> list[dict[str, Any]]:
    return [{"card": e.card, "score": float(s)} for e, s in zip(events, scores, strict=True)]


def _uid() -> str:
    return uuid.uuid4().hex[:8]


def _spec(model: Any, **extra: Any) -> ScorerSpec:
    name = f"score-{_uid()}"
    fields: dict[str, Any] = {
        "name": name,
        "topic": f"tx-{_uid()}",
        "subscription": f"app.{name}",
        "schema": Schema(Tx),
        "fn": results_fn,
        "model": model,
        "batch": Batch(max_size=32, max_wait_ms=5),
        "retry": RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.05),
        "result_type": f"app.{name}.scored",
    }
    return ScorerSpec(**{**fields, **extra})


def _txs(n: int) -> list[Event]:
    return [
        Event.new("tx", {"card": f"c{i}", "amount": float(i % 10), "count": i % 4})
        for i in range(n)
    ]


async def _run(spec: ScorerSpec, events: list[Event], url: str) -> tuple[WorkerReport, Worker]:
    broker = MemoryBroker()
    await broker.publish(spec.topic, events)
    worker = Worker([spec], broker=broker, store_url=url, model_threads=2, shutdown_grace_s=5.0)
    return await worker.run(until_idle_s=0.3), worker


async def _stored(url: str, scorer: str) -> dict[str, Any]:
    store = SqliteResultStore(url)
    try:
        return {r.event_id: r for r in await store.results(scorer=scorer, limit=100_000)}
    finally:
        await store.close()


def test_a_shadow_scores_every_event_beside_the_main_model(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/scores.db"
    spec = _spec(Linear("3", 1.0, 10.0), shadow=Linear("7", 2.0, 20.0))
    events = _txs(100)

    async def scenario() -> None:
        report, _ = await _run(spec, events, url)
        main = await _stored(url, spec.name)
        shadow = await _stored(url, f"{spec.name}.shadow")
        assert set(main) == set(shadow) == {e.id for e in events}
        assert report.scored == 100
        for e in events:
            base = e.data["amount"] + 10 * e.data["count"]
            assert (main[e.id].model_version, shadow[e.id].model_version) == ("3", "7")
            assert main[e.id].output["score"] == pytest.approx(base)
            assert shadow[e.id].output["score"] == pytest.approx(2 * base)

    asyncio.run(scenario())


def test_a_failing_shadow_never_touches_the_main_results(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path}/scores.db"
    spec = _spec(Linear("3"), shadow=Linear("8", fail=True))
    events = _txs(50)

    async def scenario() -> None:
        report, worker = await _run(spec, events, url)
        assert set(await _stored(url, spec.name)) == {e.id for e in events}
        assert await _stored(url, f"{spec.name}.shadow") == {}
        assert (report.scored, report.retried, report.dead_lettered) == (50, 0, 0)
        slot = worker.scoring[0].models.challenger
        assert slot is not None and slot.role == "shadow" and slot.failures >= 1
        assert any("challenger 8 is broken" in r.getMessage() for r in caplog.records)

    asyncio.run(scenario())


def test_a_canary_scores_its_share_chosen_by_event_id(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/scores.db"
    spec = _spec(Linear("1"), canary=Canary(model=Linear("2", 2.0), share=0.3))
    events = _txs(300)

    async def scenario() -> None:
        report, _ = await _run(spec, events, url)
        stored = await _stored(url, spec.name)
        assert set(stored) == {e.id for e in events}
        assert report.scored == 300
        for e in events:
            want = "2" if canary_pick(e.id, 0.3) else "1"
            assert stored[e.id].model_version == want
            assert stored[e.id].output["score"] == pytest.approx(int(want) * e.data["amount"])
        share = sum(r.model_version == "2" for r in stored.values()) / 300
        assert 0.2 < share < 0.4

    asyncio.run(scenario())


def test_a_failing_canary_hands_its_events_back_to_the_main_model(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/scores.db"
    spec = _spec(Linear("1"), canary=Canary(model=Linear("2", fail=True), share=0.5))
    events = _txs(60)

    async def scenario() -> None:
        report, worker = await _run(spec, events, url)
        stored = await _stored(url, spec.name)
        assert set(stored) == {e.id for e in events}
        assert {r.model_version for r in stored.values()} == {"1"}
        assert (report.scored, report.retried, report.dead_lettered) == (60, 0, 0)
        slot = worker.scoring[0].models.challenger
        assert slot is not None and slot.role == "canary" and slot.failures >= 1

    asyncio.run(scenario())


def test_canary_routing_is_stable_and_near_its_share() -> None:
    ids = [uuid.uuid4().hex for _ in range(4000)]
    picked = [canary_pick(i, 0.1) for i in ids]
    assert picked == [canary_pick(i, 0.1) for i in ids]
    assert 0.08 < sum(picked) / len(ids) < 0.12
    # A larger share keeps every event a smaller one chose: raising it only adds.
    assert all(canary_pick(i, 0.5) for i, p in zip(ids, picked, strict=True) if p)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": "fraud@challenger", "share": 0.0}, "share must be in (0, 1)"),
        ({"model": "fraud@challenger", "share": 1.0}, "share must be in (0, 1)"),
        ({"model": "fraud@challenger", "share": "10%"}, "share must be a number"),
        ({"model": None}, "Canary(model=None)"),
    ],
)
def test_canary_config_is_validated(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Canary(**kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("source", "followed"),
    [
        ("fraud", "fraud"),
        ("fraud@champion", "fraud@champion"),
        ("fraud@latest", "fraud@latest"),
        ("fraud@3", None),
        (Linear("1"), None),
        (None, None),
    ],
)
def test_only_references_without_a_fixed_version_are_followed(
    source: Any, followed: str | None
) -> None:
    assert followed_ref(source) == followed


def _models(fn: Any = results_fn) -> ModelSet:
    return ModelSet(_spec(Linear("1"), fn=fn), Linear("1"), None)


SAMPLE = [Tx(card=f"c{i}", amount=float(i), count=i % 2) for i in range(8)]


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        (Linear("2", 3.0), None),
        (Linear("2", np.nan), "NaN or infinite values for 8 of 8 recent events"),
        (Linear("2", width=3), "rows of shape (3,); the current version 1 returns one value"),
        (Linear("2", fail=True), "predict failed on 8 recent events: ValueError"),
    ],
    ids=["good", "nan", "width", "raises"],
)
def test_the_smoke_test_names_what_is_wrong(candidate: Linear, reason: str | None) -> None:
    models = _models()
    got = smoke_test(candidate, Linear("1"), SAMPLE, models.predict, models.finish)
    if reason is None:
        assert got is None
    else:
        assert got is not None and reason in got


def test_the_smoke_test_runs_the_scorers_function_and_skips_without_events() -> None:
    def picky(events: list[Tx], scores: np.ndarray) -> list[dict[str, Any]]:
        if float(np.max(scores)) > 100:
            raise ValueError("scores above 100 make no sense here")
        return results_fn(events, scores)

    models = _models(picky)
    big = Linear("2", 1000.0)
    got = smoke_test(big, Linear("1"), SAMPLE, models.predict, models.finish)
    assert got is not None
    assert "the scorer's function rejected the output: ValueError: scores above 100" in got
    assert smoke_test(big, Linear("1"), [], models.predict, models.finish) is None


def test_a_refused_version_is_retried_only_after_the_reference_moves() -> None:
    pointer = {"version": "2"}
    loaded: list[str] = []
    published: list[tuple[str, dict[str, str]]] = []
    models = {"2": Linear("2", fail=True), "3": Linear("3", 3.0), "1": Linear("1")}
    slot = ModelSlot("main", Linear("1"), "linear@champion")

    def load(ref: str) -> Linear:
        loaded.append(ref)
        return models[ref.partition("@")[2]]

    async def announce(type_: str, data: dict[str, str]) -> None:
        published.append((type_, data))

    ms = _models()
    follower = Follower(
        "score",
        [slot],
        resolve_version=lambda ref: pointer["version"],
        load=load,
        check=ms.check,
        sample=lambda: SAMPLE,
        announce=announce,
        poll_s=1.0,
    )

    async def scenario() -> None:
        await follower.poll()
        await follower.poll()
        assert loaded == ["linear@2"]
        assert slot.version == "1" and slot.refused == "2"
        pointer["version"] = "1"  # rolled back: the refusal is forgotten
        await follower.poll()
        pointer["version"] = "2"
        await follower.poll()
        assert loaded == ["linear@2", "linear@2"]
        pointer["version"] = "3"
        await follower.poll()
        assert slot.version == "3" and slot.swaps == 1

    asyncio.run(scenario())
    assert [t for t, _ in published] == ["model.refused", "model.refused", "model.swapped"]
    assert published[-1][1]["from_version"] == "1"
    assert "predict failed" in published[0][1]["reason"]
