"""``scorebus workflows`` and ``scorebus drift``, run as a user runs them."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from e2e_support import Cli
from tests.drift_support import register_fraud

from scorebus.models.demo import synthetic_transactions
from scorebus.models.registry import Registry

PIPELINE = textwrap.dedent(
    """
    from scorebus import App

    app = App("shop")

    @app.scorer(subscribe="transactions", model="fraud@champion", publish="scores")
    def score(events, scores):
        return [{"fraud": float(s)} for s in scores]

    @app.on("data.arrived", emits=["model.trained"])
    def train(event, ctx):
        ctx.publish("model.trained", {})

    @app.on("model.trained", emits=["model.promoted"])
    def promote(event, ctx):
        ctx.publish("model.promoted", {})
    """
)


@pytest.fixture
def pipeline(bare_cli: Cli) -> Cli:
    (bare_cli.cwd / "shop_pipeline.py").write_text(PIPELINE)
    return bare_cli


def test_workflows_prints_the_tree_with_its_chains(pipeline: Cli) -> None:
    text = pipeline.run("workflows", "shop_pipeline:app").stdout

    assert "app shop" in text
    assert "topic transactions" in text
    assert "scorer score (model fraud@champion)" in text
    assert "publishes shop.score.scored -> topic scores" in text
    assert "on data.arrived -> handler train -> emits model.trained" in text
    assert "data.arrived -> train -> model.trained -> promote -> model.promoted" in text


def test_workflows_mermaid_and_json(pipeline: Cli) -> None:
    mermaid = pipeline.run("workflows", "shop_pipeline:app", "--mermaid").stdout
    graph = pipeline.json("workflows", "shop_pipeline:app", "--json")

    assert mermaid.startswith("flowchart LR\n")
    assert '(["model.trained"])' in mermaid
    edges = {(e["source"], e["target"], e["kind"]) for e in graph["edges"]}
    assert ("handler:train", "type:model.trained", "emit") in edges
    assert ("type:model.trained", "handler:promote", "trigger") in edges
    assert ("scorer:score", "topic:scores", "publish") in edges
    assert len([line for line in mermaid.splitlines() if "->" in line]) == len(graph["edges"])
    assert [c["steps"] for c in graph["chains"]] == [
        ["type:data.arrived", "handler:train", "type:model.trained", "handler:promote",
         "type:model.promoted"],
    ]  # fmt: skip


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
    return path.name


def _write_csv(path: Path, rows: list[dict[str, object]]) -> str:
    header = list(rows[0])
    lines = [",".join(header)] + [",".join(str(r[k]) for k in header) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path.name


def test_drift_compares_a_file_with_the_reference(bare_cli: Cli) -> None:
    register_fraud(Registry(bare_cli.state / "models"), rows=10_000)
    same = _write_csv(bare_cli.cwd / "same.csv", synthetic_transactions(1500, seed=61))
    shifted = _write_jsonl(
        bare_cli.cwd / "shifted.jsonl", synthetic_transactions(1500, seed=62, shift=1.0)
    )

    calm = bare_cli.json("drift", "--model", "fraud@champion", "--data", same, "--json")
    moved = bare_cli.json("drift", "--model", "fraud", "--data", shifted, "--json")
    table = bare_cli.run("drift", "--model", "fraud", "--data", shifted).stdout

    assert (calm["model"], calm["version"], calm["rows"], calm["unreadable"]) == (
        "fraud",
        "1",
        1500,
        0,
    )
    assert calm["drifted"] == []
    assert calm["features"]["is_online"]["psi"] < 0.05  # CSV "True"/"False" are read as 1/0
    assert moved["rows"] == 1500 and moved["unreadable"] == 1
    assert {"amount", "distance_from_home_km", "velocity_1h"} <= set(moved["drifted"])
    assert moved["features"]["distance_from_home_km"]["psi"] > 0.2
    assert "fraud@1: 1,500 rows of shifted.jsonl" in table
    assert "drifted: amount" in table
    missing = bare_cli.run("drift", "--model", "fraud", "--data", "nope.csv", check=False)
    assert missing.returncode == 2 and missing.stderr == "error: no such file: 'nope.csv'\n"


def test_drift_of_a_version_without_reference_is_one_line(bare_cli: Cli) -> None:
    register_fraud(Registry(bare_cli.state / "models"), rows=1000, reference=False)
    data = _write_csv(bare_cli.cwd / "rows.csv", synthetic_transactions(10, seed=63))

    proc = bare_cli.run("drift", "--model", "fraud", "--data", data, check=False)

    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("error: model fraud@1 has no drift reference")


def test_workflows_of_an_unknown_app_is_one_line(bare_cli: Cli) -> None:
    proc = bare_cli.run("workflows", "no_such_module_xyz:app", check=False)

    assert proc.returncode == 2
    assert proc.stderr.startswith("error: cannot import module 'no_such_module_xyz'")
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stdout == ""
