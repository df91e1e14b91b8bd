"""The whole AI-workflow loop end to end on the embedded broker (``examples/workflows``).

data.arrived -> train -> model.trained -> promote -> the running scorer swaps ->
amounts shift -> drift.detected -> re-train -> promote -> the scorer swaps again.
The loop runs once (a real in-process worker: the scorer and every handler on
one SQLite bus); each test checks one step of what it recorded, and the last
ones the whole run: every transaction scored exactly once, by the version that
was champion, nothing pending, nothing dead-lettered.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from e2e_support import clean_env
from examples.workflows.pipeline import PSI_THRESHOLD, RECENT
from examples.workflows.run import SCORER, LoopRecord, main, run_loop

from scorebus.events import Event
from scorebus.models.registry import Registry
from scorebus.workflows import (
    DATA_ARRIVED,
    DRIFT_DETECTED,
    MODEL_PROMOTED,
    MODEL_REJECTED,
    MODEL_TRAINED,
    TRAINING_FAILED,
)
from scorebus.workflows.drift import reference_of

ROOT = Path(__file__).resolve().parents[2]
APP = "examples.workflows.pipeline:app"


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> tuple[LoopRecord, list[str]]:
    """The loop, run once for the module: what it recorded and what it printed."""
    lines: list[str] = []
    record = asyncio.run(run_loop(tmp_path_factory.mktemp("loop"), say=lines.append))
    return record, lines


@pytest.fixture
def loop(played: tuple[LoopRecord, list[str]]) -> LoopRecord:
    return played[0]


def _by_version(record: LoopRecord) -> dict[str, str]:
    """event id -> model version of its result."""
    with closing(sqlite3.connect(record.workdir / "scores.db")) as db:
        rows = db.execute(
            "SELECT event_id, model_version FROM results WHERE scorer = ?", (SCORER,)
        ).fetchall()
    return dict(rows)


def _versions(record: LoopRecord, events: list[Event]) -> set[str]:
    by_version = _by_version(record)
    return {by_version[e.id] for e in events}


def test_day_one_data_trains_v1_and_promotes_it(loop: LoopRecord) -> None:
    arrived = loop.of(DATA_ARRIVED)
    trained, promoted = loop.of(MODEL_TRAINED)[0], loop.of(MODEL_PROMOTED)[0]

    assert [Path(e.data["dataset"]).name for e in arrived] == ["day1.csv", "day2.csv"]
    assert (trained.data["version"], trained.causation_id, trained.hops) == ("1", arrived[0].id, 1)
    assert (promoted.data["version"], promoted.causation_id, promoted.hops) == ("1", trained.id, 2)
    assert promoted.data["previous"] is None
    assert loop.bootstrap is not None and loop.bootstrap.dead_lettered == 0


def test_day_two_data_trains_v2_which_wins_and_the_scorer_swaps_to_it(loop: LoopRecord) -> None:
    arrived = loop.of(DATA_ARRIVED)[1]
    trained, promoted = loop.of(MODEL_TRAINED)[1], loop.of(MODEL_PROMOTED)[1]
    swapped = loop.of("model.swapped")[0]

    assert (trained.data["version"], trained.causation_id, trained.hops) == ("2", arrived.id, 1)
    assert (promoted.data["version"], promoted.causation_id, promoted.hops) == ("2", trained.id, 2)
    assert promoted.data["previous"] == "1"
    # Measured on the same holdout: more data, a clearly better model.
    assert promoted.data["candidate_value"] > promoted.data["champion_value"] + 0.01
    assert (swapped.data["scorer"], swapped.data["role"]) == (SCORER, "main")
    assert (swapped.data["from_version"], swapped.data["to_version"]) == ("1", "2")
    # Scored before day 2: v1. Published once the swap was announced: v2.
    assert _versions(loop, loop.sent[: loop.marks["day2"]]) == {"1"}
    assert _versions(loop, loop.sent[loop.marks["v2"] : loop.marks["shift"]]) == {"2"}


def test_the_shift_is_detected_on_the_tripled_amounts_only(loop: LoopRecord) -> None:
    (drift,) = loop.of(DRIFT_DETECTED)  # none on normal traffic, none after re-training
    shifted = {e.id for e in loop.sent[loop.marks["shift"] : loop.marks["v3"]]}

    assert (drift.data["model"], drift.data["version"]) == ("fraud", "2")
    assert drift.data["drifted"] == ["amount"]
    assert drift.data["features"]["amount"]["psi"] >= PSI_THRESHOLD
    assert drift.causation_id in shifted
    assert drift.hops == 1


def test_drift_retrains_v3_on_recent_data_which_wins_and_is_swapped_in(loop: LoopRecord) -> None:
    (drift,) = loop.of(DRIFT_DETECTED)
    trained, promoted = loop.of(MODEL_TRAINED)[2], loop.of(MODEL_PROMOTED)[2]
    swaps = [(e.data["from_version"], e.data["to_version"]) for e in loop.of("model.swapped")]

    assert (trained.data["version"], trained.causation_id, trained.hops) == ("3", drift.id, 2)
    assert trained.data["dataset"] == str(loop.workdir / RECENT)
    assert (promoted.data["version"], promoted.causation_id, promoted.hops) == ("3", trained.id, 3)
    assert promoted.data["previous"] == "2"
    # On the new (shifted) holdout the re-trained model beats the old champion.
    assert promoted.data["candidate_value"] > promoted.data["champion_value"] + 0.01
    assert swaps == [("1", "2"), ("2", "3")]
    assert _versions(loop, loop.sent[loop.marks["v3"] :]) == {"3"}
    assert loop.of("model.refused") == []
    assert loop.of(MODEL_REJECTED) == loop.of(TRAINING_FAILED) == []


def test_each_version_carries_the_reference_of_its_own_training_data(loop: LoopRecord) -> None:
    registry = Registry(loop.workdir / "models")
    drift = loop.of(DRIFT_DETECTED)[0]
    v2, v3 = registry.get("fraud", 2), registry.get("fraud", 3)

    assert registry.versions("fraud") == ["1", "2", "3"]
    assert registry.resolve("fraud@champion").version == "3"
    assert v3.training_data["event"] == drift.id  # type: ignore[index]
    assert Path(registry.get("fraud", 1).training_data["uri"]).name == "day1.csv"  # type: ignore[index]
    amounts = [np.median(reference_of(mv)["features"]["amount"]["quantiles"]) for mv in (v2, v3)]
    assert 2.5 < amounts[1] / amounts[0] < 3.5  # v3 learnt the tripled amounts


def test_every_transaction_has_exactly_one_result(loop: LoopRecord) -> None:
    with closing(sqlite3.connect(loop.workdir / "scores.db")) as db:
        rows, distinct = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM results WHERE scorer = ?", (SCORER,)
        ).fetchone()
    by_version = _by_version(loop)

    assert rows == distinct == len(loop.sent) > 2000
    assert set(by_version) == {e.id for e in loop.sent}  # none lost, none extra
    assert loop.report is not None
    assert loop.report.scored == len(loop.sent)  # none scored (and acked) twice
    assert (loop.report.dead_lettered, loop.report.retried) == (0, 0)
    assert set(by_version.values()) == {"1", "2", "3"}


def test_nothing_is_left_pending_or_dead_lettered(loop: LoopRecord) -> None:
    assert loop.stats, "the broker reported no subscriptions"
    busy = [
        (s.subscription, s.pending, s.in_flight) for s in loop.stats if s.pending or s.in_flight
    ]
    assert busy == []
    assert loop.dead_letters == []
    assert {s.subscription for s in loop.stats} >= {"fraud-loop.fraud", "fraud-loop.drift_fraud"}


def test_the_run_prints_each_step(played: tuple[LoopRecord, list[str]]) -> None:
    text = "\n".join(played[1])

    for step in (
        "hop 2  model.promoted   fraud v1 is the champion",
        "model.swapped    scorer fraud: v1 -> v2",
        "hop 1  drift.detected   fraud v2: amount psi",
        "hop 3  model.promoted   fraud v3 is the champion (was v2)",
        "model.swapped    scorer fraud: v2 -> v3",
    ):
        assert step in text


def test_the_example_runs_from_the_command_line(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "examples.workflows.run", "--workdir", str(tmp_path / "demo")]

    done = subprocess.run(
        command, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=120
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "champion: fraud v3 (versions 1, 2, 3)" in done.stdout
    published = re.search(r"transactions: (\d+) published, (\d+) scored, 0 dead", done.stdout)
    assert published is not None and published[1] == published[2]
    assert "broker: 0 pending or in flight, 0 dead letters" in done.stdout


def test_the_example_leaves_a_folder_it_did_not_make_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("keep")

    assert main(["--workdir", str(tmp_path)]) == 2

    assert "is not empty" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_the_docs_show_the_loops_graph() -> None:
    graph = subprocess.run(
        [sys.executable, "-m", "scorebus.cli.main", "workflows", APP, "--mermaid"],
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    docs = (ROOT / "docs" / "workflows.md").read_text()

    assert graph.stdout.strip().startswith("flowchart LR")
    assert graph.stdout.strip() in docs, "docs/workflows.md: paste the output of " + (
        f"`scorebus workflows {APP} --mermaid`"
    )
