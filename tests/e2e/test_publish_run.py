"""``scorebus publish`` then ``scorebus run`` on a user's own app module.

The app prices orders (a model-less scorer that also publishes its results), a
second scorer audits the published results, and a workflow handler turns big
orders into follow-up events. Checked: results keyed by the events' own ids, the
outbox relayed each result exactly once, and a republished event makes no second
row whether the broker's dedupe window drops it or not.
"""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from typing import Any

import pytest
from e2e_support import Cli

APP_SOURCE = """
import msgspec

from scorebus.app import App
from scorebus.runtime.config import Batch

ORDERS, SCORED, BIG = "orders", "orders-scored", "orders-big"

app = App("e2eapp")


class Order(msgspec.Struct, frozen=True):
    order_id: str
    amount: float
    qty: int


@app.scorer(subscribe=ORDERS, schema=Order, publish=SCORED, name="pricer",
            batch=Batch(max_size=4, max_wait_ms=5))
def pricer(events, predictions):
    assert predictions is None
    return [
        {"order_id": e.order_id, "total": round(e.amount * e.qty, 2),
         "big": e.amount * e.qty >= 100}
        for e in events
    ]


@app.scorer(subscribe=SCORED, name="audit")
def audit(events, predictions):
    return [
        {"source_event": e["event_id"], "order_id": e["result"]["order_id"],
         "total": e["result"]["total"]}
        for e in events
    ]


@app.on("e2eapp.pricer.scored", topic=SCORED)
def note_big(event, ctx):
    if event.data["result"]["big"]:
        ctx.publish("order.big", {"order_id": event.data["result"]["order_id"]}, topic=BIG)
"""

ORDERS, SCORED, BIG = "orders", "orders-scored", "orders-big"


def _order(order_id: str, amount: float, qty: int) -> dict[str, Any]:
    return {"order_id": order_id, "amount": amount, "qty": qty}


def _cloudevent(event_id: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "type": "order.created",
        "source": "/e2e/shop",
        "time": "2024-05-01T12:00:00Z",
        "datacontenttype": "application/json",
        "data": data,
    }


def _jsonl(objs: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(o) + "\n" for o in objs)


def _relayed(stderr: str) -> int:
    match = re.search(r"relayed (\d+)", stderr)
    assert match, stderr
    return int(match.group(1))


def _acked(cli: Cli) -> dict[str, int]:
    return dict(cli.query("bus.db", "SELECT name, acked FROM subscriptions"))


def _results(cli: Cli, scorer: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = cli.json("results", "--json", "--scorer", scorer, "-n", "1000")
    return rows


@pytest.fixture
def app_ref(cli: Cli) -> str:
    module = f"e2e_orders_{uuid.uuid4().hex[:10]}"
    (cli.cwd / f"{module}.py").write_text(APP_SOURCE)
    return f"{module}:app"


def test_published_events_are_scored_relayed_once_and_never_stored_twice(
    cli: Cli, app_ref: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    structured = {
        f"ce-{tag}-1": _order("o-1", 12.5, 2),
        f"ce-{tag}-2": _order("o-2", 150.0, 1),
        f"ce-{tag}-3": _order("o-3", 9.99, 3),
        f"ce-{tag}-4": _order("o-4", 60.0, 2),
    }
    (cli.cwd / "orders.jsonl").write_text(
        _jsonl([_cloudevent(eid, data) for eid, data in structured.items()])
    )
    # Standard input: one more CloudEvent, bare data lines, a blank line and one
    # line that is JSON but not an Order.
    stdin_structured = {f"ce-{tag}-5": _order("o-5", 1.0, 1)}
    bare = [_order("o-6", 5.0, 1), _order("o-7", 250.0, 1), _order("o-8", 33.3, 3)]
    stdin = (
        _jsonl([_cloudevent(eid, d) for eid, d in stdin_structured.items()])
        + _jsonl(bare)
        + "\n"
        + json.dumps({"order_id": "o-bad", "amount": "lots", "qty": 1})
        + "\n"
    )
    first = cli.run("publish", ORDERS, "orders.jsonl")
    assert re.search(r"published 4 event\(s\) to 'orders'", first.stderr), first.stderr
    second = cli.run("publish", ORDERS, "-", stdin=stdin)
    assert re.search(r"published 5 event\(s\) to 'orders'", second.stderr), second.stderr

    run = cli.run("run", app_ref, "--until-idle", "2", timeout=120)

    orders = {**structured, **stdin_structured, **{d["order_id"]: d for d in bare}}
    by_order = {d["order_id"]: d for d in orders.values()}
    priced = _results(cli, "pricer")
    assert len(priced) == len(by_order) == 8
    assert len({r["event_id"] for r in priced}) == 8
    for r in priced:
        order = by_order[r["output"]["order_id"]]
        total = round(order["amount"] * order["qty"], 2)
        assert r["output"] == {"order_id": order["order_id"], "total": total, "big": total >= 100}
    # A CloudEvent's own id is its result's key; bare lines got fresh unique ids.
    keyed = {r["event_id"]: r["output"]["order_id"] for r in priced}
    for eid, data in {**structured, **stdin_structured}.items():
        assert keyed[eid] == data["order_id"]
    bare_ids = {eid for eid, oid in keyed.items() if oid in {d["order_id"] for d in bare}}
    assert len(bare_ids) == 3
    assert all(re.fullmatch(r"[0-9a-f]{32}", eid) for eid in bare_ids)

    letters = cli.json("dlq", "list", "--json")
    assert [(d["subscription"], d["reason"], d["event_type"]) for d in letters] == [
        ("e2eapp.pricer", "schema", ORDERS)
    ]
    assert "amount" in letters[0]["error"]

    # The relay published each result once: the audit scorer saw each exactly once.
    assert _relayed(run.stderr) == 8
    audited = _results(cli, "audit")
    assert sorted(r["output"]["source_event"] for r in audited) == sorted(keyed)
    assert {r["output"]["source_event"]: r["output"]["total"] for r in audited} == {
        r["event_id"]: r["output"]["total"] for r in priced
    }
    acked = _acked(cli)
    assert acked["e2eapp.pricer"] == 8
    assert acked["e2eapp.audit"] == 8
    assert acked["e2eapp.note_big"] == 8

    # The handler's follow-ups: one per big order, caused by the relayed result event.
    big = cli.query(
        "bus.db", "SELECT event_id, type, ext, data FROM messages WHERE topic = ?", [BIG]
    )
    big_orders = sorted(json.loads(row[3])["order_id"] for row in big)
    assert big_orders == sorted(r["output"]["order_id"] for r in priced if r["output"]["big"])
    assert big_orders  # the data has big orders, so the check above means something
    audited_event_ids = {r["event_id"] for r in audited}
    for _, type_, ext, _ in big:
        assert type_ == "order.big"
        assert json.loads(ext)["causationid"] in audited_event_ids

    status = cli.json("status", "--json")
    assert status["outbox"] == 0
    subs = {s["subscription"]: s for s in status["subscriptions"]}
    for name in ("e2eapp.pricer", "e2eapp.audit", "e2eapp.note_big"):
        assert (subs[name]["pending"], subs[name]["in_flight"]) == (0, 0), subs[name]

    # The same CloudEvents again: the broker drops them as duplicates within its window...
    again = cli.run("publish", ORDERS, "orders.jsonl")
    assert "published 4 event(s)" in again.stderr
    rerun = cli.run("run", app_ref, "--until-idle", "2", timeout=120)
    assert _relayed(rerun.stderr) == 0
    assert len(_results(cli, "pricer")) == 8
    assert len(_results(cli, "audit")) == 8

    # ...and once the window has passed (simulated by forgetting the recent ids),
    # they are delivered and scored again, but the sink keeps one row per event and
    # nothing is published a second time.
    conn = sqlite3.connect(cli.state / "bus.db", timeout=30)
    try:
        with conn:
            conn.execute("DELETE FROM recent_ids")
    finally:
        conn.close()
    before = _acked(cli)
    cli.run("publish", ORDERS, "orders.jsonl")
    late = cli.run("run", app_ref, "--until-idle", "2", timeout=120)
    after = _acked(cli)
    assert after["e2eapp.pricer"] == before["e2eapp.pricer"] + 4, "the republish never arrived"
    assert after["e2eapp.audit"] == before["e2eapp.audit"]
    assert _relayed(late.stderr) == 0
    assert len(_results(cli, "pricer")) == 8
    assert len(_results(cli, "audit")) == 8
    assert cli.query("bus.db", "SELECT COUNT(*) FROM messages WHERE topic = ?", [BIG]) == [
        (len(big),)
    ]
    assert cli.query(
        "scores.db", "SELECT COUNT(*), COUNT(DISTINCT scorer || '/' || event_id) FROM results"
    ) == [(16, 16)]
