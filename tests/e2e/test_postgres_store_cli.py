"""``scorebus run/results/status`` with a PostgreSQL results store, from the command line.

The read commands must open the store before they query it (a regression:
``results`` and ``status`` failed on PostgreSQL with "not open").
"""

from __future__ import annotations

import json
import uuid

from e2e_support import Cli
from tests.contract.backend_postgres import _created, pg_url

APP_SOURCE = """
from scorebus import App
from scorebus.models.demo import Transaction

app = App("pgstore")


@app.scorer(subscribe="transactions", schema=Transaction, model="fraud@champion")
def score(events, scores):
    return [{"card": e.card_id, "score": float(s)} for e, s in zip(events, scores)]
"""


def test_results_and_status_read_a_postgres_store(cli: Cli) -> None:
    from scorebus.models.demo import synthetic_transactions

    table = f"sbt_cli_{uuid.uuid4().hex[:10]}"
    _created.update({table, f"{table}_outbox"})
    store = pg_url(table=table, outbox=f"{table}_outbox")
    (cli.cwd / "pg_app.py").write_text(APP_SOURCE)
    lines = [json.dumps(tx) for tx in synthetic_transactions(40, seed=3)]
    (cli.cwd / "tx.jsonl").write_text("\n".join(lines) + "\n")
    cli.run("publish", "transactions", "tx.jsonl")

    run = cli.run("run", "pg_app:app", "--until-idle", "1", "--store", store)
    assert "scored 40" in run.stderr

    rows = cli.json("results", "--store", store, "--limit", "100", "--json")
    assert len(rows) == 40
    assert {r["scorer"] for r in rows} == {"score"}
    assert all(0.0 <= r["output"]["score"] <= 1.0 for r in rows)

    status = cli.json("status", "--store", store, "--json")
    assert {s["subscription"]: s["scored"] for s in status["subscriptions"]} == {
        "pgstore.score": 40
    }
    assert status["pending"] == 0
