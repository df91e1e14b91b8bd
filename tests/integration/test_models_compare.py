"""``scorebus models compare`` on real rows in SQLite and in the PostgreSQL server:
a champion, its shadow and a canary side by side."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from tests.contract.backend_postgres import drop_tables, pg_url

from scorebus.sinks import open_store
from scorebus.sinks.base import ScoreResult


def _row(scorer: str, event_id: str, version: str, score: float, service_ms: float) -> ScoreResult:
    now = time.time()
    return ScoreResult(
        scorer=scorer,
        event_id=event_id,
        model="fraud",
        model_version=version,
        output=msgspec.json.encode({"card": event_id, "score": score}),
        event_time=now,
        scored_at=now,
        latency_ms=service_ms + 1.0,
        service_ms=service_ms,
    )


def _rows() -> list[ScoreResult]:
    # Champion fraud@1 scores e0..e9 as i/10; its shadow fraud@3 scores them 0.15
    # higher (only e4 crosses 0.5: 0.40 -> 0.55); a canary fraud@2 scores e10..e14.
    rows = [_row("score", f"e{i}", "1", i / 10, 10.0) for i in range(10)]
    rows += [_row("score.shadow", f"e{i}", "3", i / 10 + 0.15, 30.0) for i in range(10)]
    rows += [_row("score", f"e{i}", "2", 0.9, 20.0) for i in range(10, 15)]
    return rows


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/scores.db"
        return
    tag = uuid.uuid4().hex[:10]
    names = (f"sbc_{tag}_r", f"sbc_{tag}_o")
    yield pg_url(table=names[0], outbox=names[1])
    drop_tables(set(names))


def _write(url: str) -> None:
    async def go() -> None:
        store = open_store(url)
        await store.open()
        try:
            await store.write(_rows())
        finally:
            await store.close()

    asyncio.run(go())


def _scorebus(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOREBUS_")}
    env["NO_COLOR"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "scorebus.cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compare_sets_champion_shadow_and_canary_side_by_side(
    store_url: str, tmp_path: Path
) -> None:
    _write(store_url)

    proc = _scorebus("models", "compare", "score", "--store", store_url, "--json", cwd=tmp_path)

    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["scorer"] == "score"
    assert report["baseline"] == {"model": "fraud", "version": "1"}
    by = {(v["role"], v["version"]): v for v in report["versions"]}
    assert [(v["role"], v["version"]) for v in report["versions"]] == [
        ("main", "1"),
        ("main", "2"),
        ("shadow", "3"),
    ]
    champion, canary, shadow = by["main", "1"], by["main", "2"], by["shadow", "3"]
    assert (champion["count"], champion["common"], champion["agreement"]) == (10, None, None)
    assert champion["score"]["mean"] == pytest.approx(0.45)
    assert champion["score"]["p50"] == pytest.approx(0.45)
    assert champion["service_ms"]["p50"] == pytest.approx(10.0)
    assert (shadow["count"], shadow["common"]) == (10, 10)
    assert shadow["agreement"] == pytest.approx(0.9)
    assert shadow["mean_abs_diff"] == pytest.approx(0.15)
    assert shadow["score"]["mean"] == pytest.approx(0.6)
    assert shadow["service_ms"]["p99"] == pytest.approx(30.0)
    # A canary scores other events than the champion: nothing to agree on.
    assert (canary["count"], canary["common"], canary["agreement"]) == (5, 0, None)
    assert canary["score"]["p90"] == pytest.approx(0.9)

    everyone_agrees = _scorebus(
        "models",
        "compare",
        "score",
        "--store",
        store_url,
        "--json",
        "--threshold",
        "2",
        cwd=tmp_path,
    )
    shadow_row = [
        v for v in json.loads(everyone_agrees.stdout)["versions"] if v["role"] == "shadow"
    ]
    assert shadow_row[0]["agreement"] == pytest.approx(1.0)

    table = _scorebus("models", "compare", "score", "--store", store_url, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    # One column per version, in the order of the JSON report.
    rows = {
        cells[0]: cells[1:]
        for line in table.stdout.splitlines()
        if len(cells := [c.strip() for c in line.strip("│┃ ").split("│")]) == 4
    }
    assert "fraud@1" in table.stdout and "main, baseline" in table.stdout
    assert rows["agreement"] == ["-", "-", "90.0%"]
    assert rows["mean |diff|"] == ["-", "-", "0.150"]
    assert rows["score mean"] == ["0.450", "0.900", "0.600"]
    assert rows["service ms p50"] == ["10.0", "20.0", "30.0"]


def test_compare_of_an_unknown_scorer_names_those_with_results(
    store_url: str, tmp_path: Path
) -> None:
    _write(store_url)

    proc = _scorebus("models", "compare", "nope", "--store", store_url, cwd=tmp_path)

    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "no results for scorer 'nope'" in proc.stderr
    assert "scorers with results: score, score.shadow" in proc.stderr
