"""A user's shadow pipeline from the command line: register a challenger, run the app
with ``--model-poll``, then ``scorebus models compare`` the champion and its shadow."""

from __future__ import annotations

import json

from e2e_support import Cli

APP_SOURCE = """
from scorebus import App
from scorebus.models.demo import Transaction

app = App("shadowing")


@app.scorer(subscribe="transactions", schema=Transaction,
            model="fraud@champion", shadow="fraud@challenger")
def score(events, scores):
    return [{"card": e.card_id, "score": float(s)} for e, s in zip(events, scores)]
"""


def test_a_shadow_run_then_compare(cli: Cli) -> None:
    from scorebus.models.demo import FEATURES, synthetic_transactions

    (cli.cwd / "shadow_app.py").write_text(APP_SOURCE)
    champion = next((cli.state / "models" / "fraud" / "1").glob("model.*"))
    features = ",".join(FEATURES)
    cli.run(
        "models",
        "register",
        "fraud",
        str(champion),
        "--alias",
        "challenger",
        "--features",
        features,
    )
    lines = [json.dumps(tx) for tx in synthetic_transactions(120, seed=5)]
    (cli.cwd / "tx.jsonl").write_text("\n".join(lines) + "\n")
    cli.run("publish", "transactions", "tx.jsonl")

    run = cli.run("run", "shadow_app:app", "--until-idle", "1", "--model-poll", "0.2")
    assert "scored 120" in run.stderr

    report = cli.json("models", "compare", "score", "--json")
    champion_row, shadow_row = report["versions"]
    assert (champion_row["role"], champion_row["version"], champion_row["count"]) == (
        "main",
        "1",
        120,
    )
    assert champion_row["baseline"] is True
    assert (shadow_row["role"], shadow_row["version"], shadow_row["count"]) == ("shadow", "2", 120)
    # The same model file under two versions: every decision agrees.
    assert shadow_row["common"] == 120
    assert shadow_row["agreement"] == 1.0
    assert shadow_row["mean_abs_diff"] == 0.0
    assert shadow_row["score"] == champion_row["score"]
