"""``scorebus demo`` end to end: the summary, the dead letters, results and status.

And the demo interrupted with Ctrl-C, then finished by ``scorebus run``: nothing
lost, nothing scored twice.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time

from e2e_support import Cli

from scorebus.demo.data import EXPECTED_REASON, Plan, chunks

REASONS = {"undecodable", "schema", "too_large"}
SUBSCRIPTION = "demo.fraud"


def test_demo_scores_every_valid_event_and_dead_letters_every_malformed_one(cli: Cli) -> None:
    proc = cli.run(
        "demo", "--events", "3000", "--bad-fraction", "0.05", "--workers", "2", "--json",
        timeout=180,
    )  # fmt: skip

    assert len(proc.stdout.strip().splitlines()) == 1, proc.stdout
    summary = json.loads(proc.stdout)
    assert isinstance(summary, dict)
    assert summary["published"] == 3000
    assert summary["malformed"] > 0
    assert summary["scored"] == summary["valid"] == 3000 - summary["malformed"]
    assert summary["dead_lettered"] == summary["malformed"]
    assert (summary["lost"], summary["duplicated"], summary["wrong_outcome"]) == (0, 0, 0)
    reasons = summary["dead_letter_reasons"]
    assert set(reasons) <= REASONS
    assert sum(reasons.values()) == summary["dead_lettered"]
    assert summary["workers"] == 2
    model, _, version = summary["model"].partition("@")
    assert model == "fraud"
    assert version
    run_id = summary["run_id"]

    letters = cli.json("dlq", "list", "--json", "-n", "100000")
    assert len(letters) == summary["dead_lettered"]
    assert len({d["event_id"] for d in letters}) == len(letters)
    by_reason: dict[str, list[dict[str, object]]] = {}
    for d in letters:
        assert d["subscription"] == SUBSCRIPTION
        assert str(d["event_id"]).startswith(run_id)
        assert d["reason"] in REASONS
        assert d["attempts"] == 1  # dead-lettered at once, never retried
        assert d["error"]
        by_reason.setdefault(d["reason"], []).append(d)
    assert {r: len(ds) for r, ds in by_reason.items()} == reasons

    # One of each reason in full: the raw payload is there, and it is the bad one.
    for reason, ds in by_reason.items():
        shown = cli.json("dlq", "show", str(ds[0]["id"]), "--json")
        assert shown["id"] == ds[0]["id"]
        assert shown["event_id"] == ds[0]["event_id"]
        assert shown["reason"] == reason
        payload = shown["payload"]
        assert isinstance(payload, str)
        assert payload
        if reason == "too_large":
            assert len(payload.encode()) > 16 * 1024
        elif reason == "undecodable":
            try:
                json.loads(payload)
            except ValueError:
                pass
            else:
                raise AssertionError(f"an undecodable payload decodes: {payload!r}")
        else:
            data = json.loads(payload)
            assert "amount" not in data or not isinstance(data["amount"], float), data

    rows = cli.json("results", "--json", "-n", "5")
    assert len(rows) == 5
    for r in rows:
        assert r["scorer"] == "fraud"
        assert r["model"] == "fraud"
        assert r["model_version"] == version
        assert r["event_id"].startswith(run_id)
        p = r["output"]["fraud_probability"]
        assert 0.0 <= p <= 1.0
        assert r["output"]["flagged"] == (p >= 0.5)
    assert [r["scored_at"] for r in rows] == sorted((r["scored_at"] for r in rows), reverse=True)

    status = cli.json("status", "--json")
    assert status["pending"] == 0
    assert status["in_flight"] == 0
    assert status["outbox"] == 0
    (sub,) = [s for s in status["subscriptions"] if s["subscription"] == SUBSCRIPTION]
    assert sub["scored"] == summary["scored"]
    assert sub["dead_lettered"] == summary["dead_lettered"]
    assert sub["acked"] == summary["scored"]


def _scored_so_far(cli: Cli) -> int:
    proc = cli.run("status", "--json", check=False, timeout=30)
    if proc.returncode != 0:
        return 0
    return sum(s["scored"] for s in json.loads(proc.stdout)["subscriptions"])


def test_an_interrupted_demo_is_finished_by_run_without_loss_or_duplicates(cli: Cli) -> None:
    # The default size: a smaller demo finishes before a status poll can see it working.
    events, bad_fraction, seed = 100_000, 0.02, 42
    demo = cli.popen(
        "demo", "--events", str(events), "--bad-fraction", str(bad_fraction),
        "--seed", str(seed), "--workers", "1",
        start_new_session=True,  # its own process group, as a terminal's Ctrl-C sees it
    )  # fmt: skip
    try:
        give_up = time.monotonic() + 90
        while _scored_so_far(cli) == 0:
            assert demo.poll() is None, "the demo exited before it scored anything"
            assert time.monotonic() < give_up, "the demo scored nothing within 90 s"
            time.sleep(0.1)
        os.killpg(demo.pid, signal.SIGINT)
        _, err_bytes = demo.communicate(timeout=90)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.communicate(timeout=30)
    err = err_bytes.decode()
    assert demo.returncode == 130, f"the demo was not interrupted (exit {demo.returncode}):\n{err}"
    assert "interrupted" in err
    assert "Traceback" not in err
    match = re.search(r"run (demo-[0-9a-f]+):", err)
    assert match, err
    run_id = match.group(1)

    # What the interrupted demo published: acked + still queued + dead-lettered.
    ((acked,),) = cli.query(
        "bus.db", "SELECT acked FROM subscriptions WHERE name = ?", [SUBSCRIPTION]
    )
    ((queued,),) = cli.query(
        "bus.db", "SELECT COUNT(*) FROM messages WHERE subscription = ?", [SUBSCRIPTION]
    )
    ((dead,),) = cli.query("bus.db", "SELECT COUNT(*) FROM dead_letters WHERE subscription = ?", [SUBSCRIPTION])  # fmt: skip
    published = acked + queued + dead
    assert 0 < published <= events
    assert published % 2000 == 0 or published == events, "a chunk was half published"
    assert acked < published, "the demo finished before the interrupt; nothing left to test"

    finish = cli.run("run", "scorebus.demo:app", "--until-idle", "3", timeout=180)
    assert "Traceback" not in finish.stderr

    status = cli.json("status", "--json")
    assert status["pending"] == 0
    assert status["in_flight"] == 0

    scored_rows = cli.query(
        "scores.db", "SELECT event_id FROM results WHERE scorer = 'fraud' AND event_id LIKE ?",
        [f"{run_id}-%"],
    )  # fmt: skip
    scored = [r[0] for r in scored_rows]
    assert len(scored) == len(set(scored)), "an event was scored twice"
    letters = dict(
        cli.query(
            "bus.db",
            "SELECT event_id, reason FROM dead_letters WHERE subscription = ? AND event_id LIKE ?",
            [SUBSCRIPTION, f"{run_id}-%"],
        )
    )
    assert len(scored) + len(letters) == published
    assert not set(scored) & set(letters), "an event was both scored and dead-lettered"

    # The demo's traffic is deterministic for a seed: rebuild which events were bad.
    plan = Plan(run_id=run_id, total=events)
    for _ in chunks(plan, bad_fraction, seed=seed):
        pass
    expected_ids = {f"{run_id}-{i:07d}" for i in range(published)}
    assert set(scored) | set(letters) == expected_ids
    bad = {eid: kind for eid, kind in plan.bad.items() if eid in expected_ids}
    assert set(letters) == set(bad)
    assert all(letters[eid] == EXPECTED_REASON[kind] for eid, kind in bad.items())


def test_status_of_a_fresh_directory_is_empty(bare_cli: Cli) -> None:
    status = bare_cli.json("status", "--json")
    assert status["subscriptions"] == []
    assert (status["pending"], status["in_flight"], status["outbox"]) == (0, 0, 0)
    assert status["broker"] == "sqlite:///.scorebus/bus.db"
    assert (bare_cli.state / "bus.db").exists()
