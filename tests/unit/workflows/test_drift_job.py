"""``drift_job``: the window over events, the cooldown, following the alias, no reference."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from tests.drift_support import register_fraud

from scorebus.app import App
from scorebus.errors import ConfigError
from scorebus.events import Event
from scorebus.models.demo import synthetic_transactions
from scorebus.models.registry import Registry
from scorebus.runtime.spec import HandlerContext
from scorebus.workflows import DRIFT_DETECTED
from scorebus.workflows.drift import DriftJob, drift_job


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    registry = Registry(tmp_path_factory.mktemp("drift") / "models")
    register_fraud(registry)
    return registry


def _feed(job: DriftJob, rows: list[dict[str, Any]]) -> list[tuple[str, Event]]:
    """Each row as the scorer's input event; what the job published, with its topic."""
    published = []
    for row in rows:
        event = Event.new("transactions", row)
        ctx = HandlerContext(event=event, default_topic="transactions")
        job(event, ctx)
        published.extend(ctx.outgoing)
    return published


def test_drift_is_published_once_after_shifted_events_and_not_before(registry: Registry) -> None:
    job = drift_job("fraud@champion", registry=registry, window=400, every=200)

    assert _feed(job, synthetic_transactions(1000, seed=21)) == []
    assert job.version == "1" and job.last_report is not None
    assert job.last_report.rows == 400 and job.last_report.drifted == []
    job_psi_before = job.last_report.features["amount"].psi

    published = _feed(job, synthetic_transactions(400, seed=22, shift=1.0))

    ((topic, event),) = published
    assert (topic, event.type, event.subject) == ("events", DRIFT_DETECTED, "fraud@1")
    data = event.data
    assert (data["model"], data["version"], data["window"]) == ("fraud", "1", 400)
    assert {"amount", "distance_from_home_km", "velocity_1h"} <= set(data["drifted"])
    assert set(data["features"]) == set(job.monitor.features)  # type: ignore[union-attr]
    amount = data["features"]["amount"]
    assert set(amount) == {"psi", "ks", "p_value"}
    # Found at the first check with shifted events: half of the window is shifted.
    assert amount["p_value"] < 0.01 / len(data["features"])
    assert amount["psi"] > 0.05 > job_psi_before
    assert event.causation_id is not None
    # The cooldown: more drifted traffic on the same version publishes nothing more.
    assert _feed(job, synthetic_transactions(1000, seed=23, shift=1.0)) == []
    assert job.alerted


def test_a_promoted_version_resets_the_window_and_the_cooldown(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "models")
    register_fraud(registry)
    job = drift_job("fraud@champion", registry=registry, window=400, every=200)
    assert len(_feed(job, synthetic_transactions(400, seed=31, shift=1.0))) == 1

    # Re-trained on the shifted traffic and promoted: that traffic is now the norm.
    register_fraud(registry, shift=1.0, seed=8)
    assert _feed(job, synthetic_transactions(200, seed=32, shift=1.0)) == []
    assert job.version == "2" and job.monitor is not None
    assert job.monitor.rows == 0 and not job.alerted
    assert _feed(job, synthetic_transactions(600, seed=33, shift=1.0)) == []
    assert job.last_report is not None and job.last_report.drifted == []

    # Back to the old distribution: drift against version 2, reported once.
    published = _feed(job, synthetic_transactions(600, seed=34))
    assert [e.data["version"] for _, e in published] == ["2"]


def test_a_version_without_reference_is_logged_once_and_its_events_pass(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = Registry(tmp_path / "models")
    register_fraud(registry, reference=False, rows=2000)
    job = drift_job("fraud", registry=registry, window=100, every=50)

    with caplog.at_level(logging.WARNING, logger="scorebus.workflows.drift"):
        assert _feed(job, synthetic_transactions(300, seed=41, shift=2.0)) == []

    warnings = [r.getMessage() for r in caplog.records if "no drift reference" in r.getMessage()]
    assert len(warnings) == 1 and "fraud@1" in warnings[0]
    assert job.version == "1" and job.monitor is None


def test_an_unknown_model_is_logged_and_does_not_fail_the_handler(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    job = drift_job("nosuch@champion", registry=tmp_path / "empty", window=10, every=5)

    with caplog.at_level(logging.WARNING, logger="scorebus.workflows.drift"):
        assert _feed(job, synthetic_transactions(20, seed=42)) == []

    assert any("unknown model 'nosuch'" in r.getMessage() for r in caplog.records)
    assert job.version is None


def test_the_job_declares_what_it_emits_to_app_on(registry: Registry) -> None:
    app = App("drift-app")
    job = drift_job("fraud@champion", registry=registry, topic=app.events_topic)

    app.on("transactions", topic="transactions")(job)

    (spec,) = app.handlers
    assert spec.name == "drift_fraud"
    assert spec.emits == frozenset({DRIFT_DETECTED})
    assert (spec.topic, spec.types) == ("transactions", frozenset({"transactions"}))
    assert not spec.is_async


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"every": 0}, "every=0"),
        ({"window": -1}, "window=-1"),
        ({"psi_threshold": -0.1}, "psi_threshold=-0.1"),
        ({"ks_pvalue": 2}, "ks_pvalue=2"),
    ],
)
def test_bad_settings_are_refused_when_the_job_is_built(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        drift_job("fraud@champion", registry=".", **kwargs)
