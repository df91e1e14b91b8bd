"""How many worker processes and predict threads a run gets when none are given."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

from scorebus.app import Settings, child
from scorebus.app import run as run_mod
from scorebus.app.run import (
    MAX_DEFAULT_WORKERS,
    WorkerPool,
    default_model_threads,
    default_workers,
    plan_workers,
    run_processes,
    usable_cores,
)
from scorebus.errors import ConfigError, ScorebusError


def test_usable_cores_follow_the_affinity_mask() -> None:
    assert usable_cores() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("cores", "workers", "threads"),
    [(1, 1, 1), (2, 2, 1), (4, 4, 1), (16, MAX_DEFAULT_WORKERS, 2)],
)
def test_default_one_worker_per_core_and_the_cores_shared_out_as_threads(
    monkeypatch: pytest.MonkeyPatch, cores: int, workers: int, threads: int
) -> None:
    monkeypatch.setattr(run_mod, "usable_cores", lambda: cores)

    assert plan_workers(Settings()) == (workers, threads)
    assert default_model_threads(1) == cores  # one process on its own uses every core


def test_a_memory_broker_runs_in_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_mod, "usable_cores", lambda: 4)

    assert default_workers("memory://x") == 1
    assert plan_workers(Settings(broker="memory://x")) == (1, 4)


def test_given_settings_win_over_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_mod, "usable_cores", lambda: 4)

    assert plan_workers(Settings(workers=3)) == (3, 1)
    assert plan_workers(Settings(workers=1)) == (1, 4)
    assert plan_workers(Settings(workers=2, model_threads=3)) == (2, 3)


def test_env_sets_workers_and_threads_and_flags_override_it() -> None:
    env = {"SCOREBUS_WORKERS": "3", "SCOREBUS_MODEL_THREADS": "2"}
    settings = Settings.from_env(env)

    assert (settings.workers, settings.model_threads) == (3, 2)
    assert settings.override(workers=1, model_threads=None).workers == 1
    assert Settings.from_env({}).workers is None


@pytest.mark.parametrize("raw", ["0", "-2", "two", "1.5"])
def test_bad_counts_in_the_env_name_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"SCOREBUS_WORKERS='.*': expected a whole number >= 1"):
        Settings.from_env({"SCOREBUS_WORKERS": raw})


def test_each_worker_process_is_told_its_share_of_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(run_mod, "usable_cores", lambda: 4)

    spec = msgspec.json.decode(WorkerPool("m:app", Settings(), workers=2)._spec)
    pinned = msgspec.json.decode(WorkerPool("m:app", Settings(model_threads=3), workers=2)._spec)

    assert spec["model_threads"] == 2
    assert pinned["model_threads"] == 3


def test_a_worker_process_reports_a_scorebus_error_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = {
        "app": "scorebus_no_such_module_h5:app",
        "broker": "memory://child-error",
        "store": "sqlite:///unused.db",
        "registry": "unused",
        "trust_models": False,
        "until_idle_s": 0.1,
        "grace_s": 1.0,
    }

    code = child.main([msgspec.json.encode(spec).decode()])

    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: worker process: cannot import module")
    assert len(err.strip().splitlines()) == 1


def test_a_failed_worker_process_fails_the_run(tmp_path: Path) -> None:
    settings = Settings(
        broker=f"sqlite:///{tmp_path}/bus.db", store=f"sqlite:///{tmp_path}/scores.db"
    )

    with pytest.raises(ScorebusError, match=r"2 of 2 worker process\(es\) failed \(exit code 2\)"):
        run_processes("scorebus_no_such_module_h5:app", settings, workers=2, until_idle_s=0.1)
