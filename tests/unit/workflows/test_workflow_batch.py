"""The file.landed job: score a file, report bad rows, follow the champion."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from sklearn.linear_model import LogisticRegression

from scorebus.errors import ConfigError
from scorebus.events import Event
from scorebus.models.demo import FEATURES, Transaction, synthetic_features, synthetic_transactions
from scorebus.models.registry import Registry
from scorebus.runtime.spec import HandlerContext
from scorebus.workflows import batch_predict_job


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    registry = Registry(tmp_path_factory.mktemp("reg") / "models")
    x, y = synthetic_features(2000, 5)
    registry.register("fraud", LogisticRegression(max_iter=1000).fit(x, y), features=FEATURES)
    registry.promote("fraud", 1)
    return registry


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> str:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def _call(handler: Any, data: dict[str, Any]) -> list[Event]:
    event = Event.new("file.landed", data)
    ctx = HandlerContext(event=event, default_topic="events")
    handler(event, ctx)
    return [e for _, e in ctx.outgoing]


def test_a_landed_file_is_scored_and_its_bad_rows_reported(
    tmp_path: Path, registry: Registry
) -> None:
    rows = synthetic_transactions(50, seed=2)
    rows[6] = {**rows[6], "amount": "lots"}
    rows[20] = {**rows[20], "hour": 31}
    uri = _write_csv(tmp_path / "txns.csv", rows)
    handler = batch_predict_job(
        "fraud@champion", schema=Transaction, registry=registry, batch_size=16
    )

    (ready,) = _call(handler, {"uri": uri})

    assert ready.type == "predictions.ready"
    report = ready.data
    assert (report["rows"], report["scored"], report["bad"]) == (50, 48, 2)
    assert [(b["row"], b["reason"]) for b in report["bad_rows"]] == [(7, "schema"), (21, "schema")]
    assert report["model"] == "fraud@1"
    assert report["output_uri"] == str(tmp_path / "txns.predictions.csv")
    with open(report["output_uri"], newline="") as f:
        scored = list(csv.DictReader(f))
    assert len(scored) == 48
    assert {r["model_version"] for r in scored} == {"1"}
    errors = [json.loads(line) for line in Path(report["errors_uri"]).read_text().splitlines()]
    assert [e["row"] for e in errors] == [7, 21]
    assert handler.__name__ == "batch_predict_fraud"
    assert set(handler.emits) == {"predictions.ready", "predictions.failed"}  # type: ignore[attr-defined]


def test_the_job_follows_the_alias_and_ignores_its_own_outputs(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "models")
    x, y = synthetic_features(1000, 5)
    for _ in range(2):
        registry.register("fraud", LogisticRegression(max_iter=500).fit(x, y), features=FEATURES)
    registry.promote("fraud", 1)
    uri = _write_csv(tmp_path / "a.csv", synthetic_transactions(5, seed=3))
    handler = batch_predict_job("fraud", schema=Transaction, registry=registry)

    (before,) = _call(handler, {"uri": uri})
    registry.promote("fraud", 2)
    (after,) = _call(handler, {"uri": uri})

    assert (before.data["model"], after.data["model"]) == ("fraud@1", "fraud@2")
    assert _call(handler, {"uri": before.data["output_uri"]}) == []


def test_a_file_that_cannot_be_scored_publishes_predictions_failed(
    tmp_path: Path, registry: Registry
) -> None:
    handler = batch_predict_job("fraud", schema=Transaction, registry=registry)
    (tmp_path / "notes.txt").write_text("hello")

    (gone,) = _call(handler, {"uri": str(tmp_path / "missing.csv")})
    (unknown,) = _call(handler, {"uri": str(tmp_path / "notes.txt")})

    assert gone.type == unknown.type == "predictions.failed"
    assert (gone.data["uri"], gone.data["reason"]) == (str(tmp_path / "missing.csv"), "not_found")
    assert unknown.data["reason"] == "undecodable"


def test_a_reference_needs_a_registry() -> None:
    with pytest.raises(ConfigError, match="registry="):
        batch_predict_job("fraud@champion", schema=Transaction)
