"""The Google Cloud path end to end: the Pub/Sub emulator, functions-framework, the CLI.

Everything scorebus does here is done as a user does it: ``scorebus`` commands
in subprocesses with ``--broker pubsub://PROJECT?emulator=HOST:PORT`` (the
subprocesses never see ``PUBSUB_EMULATOR_HOST``: the URL alone points them at
the emulator), and a real ``functions-framework`` server running the one-line
``main.py`` of docs/gcp.md. Producers and observers are Google's own client
library (google-cloud-pubsub's ``PublisherClient`` and ``SubscriberClient``,
pointed at the emulator by ``PUBSUB_EMULATOR_HOST`` in this process only),
never scorebus.

Dead letters: a subscription's Pub/Sub dead-letter policy (``max_delivery_attempts``)
and the app's ``RetryPolicy(max_attempts=...)`` both end retries, and whichever
is lower acts first. With ``max_attempts <= max_delivery_attempts`` scorebus
dead-letters on the last failed attempt itself: the letter is in ``scorebus dlq``
and on the dead-letter topic with ``scorebus-reason``. With ``max_attempts``
higher, Pub/Sub forwards the message after ``max_delivery_attempts`` deliveries:
it is on the dead-letter topic with ``CloudPubSubDeadLetterSource*`` attributes,
but scorebus never saw it fail for the last time, so ``scorebus dlq`` does not
list it (``run --create`` warns about that). The dead-letter test covers both.

Against a real project instead of the emulator: ``SCOREBUS_E2E_PUBSUB_PROJECT=PROJECT``
with Application Default Credentials (see docs/gcp.md). The push test is
emulator-only (real Pub/Sub pushes only to public HTTPS endpoints) and skips;
everything each test created is deleted at its end.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_support import Cli, clean_env
from tests.pubsub_emulator import emulator_host, scratch_project

REAL_PROJECT = "SCOREBUS_E2E_PUBSUB_PROJECT"
RUN_TIMEOUT_S = 90.0
MAIN = 'from scorebus.gcp.functions import entry_point; score = entry_point("pipeline:app")\n'


class Raw:
    """google-cloud-pubsub's own clients on the test's project: producer and observer."""

    def __init__(self, project: str) -> None:
        from google.cloud import pubsub_v1

        self.project = project
        self.pub = pubsub_v1.PublisherClient()
        self.sub = pubsub_v1.SubscriberClient()

    def topic(self, name: str) -> str:
        return f"projects/{self.project}/topics/{name}"

    def subscription(self, name: str) -> str:
        return f"projects/{self.project}/subscriptions/{name}"

    def publish(self, topic: str, data: dict[str, Any], *, event_id: str, type_: str) -> str:
        """Publish a CloudEvent in binary content mode; returns the Pub/Sub message id."""
        attributes = {
            "ce-id": event_id,
            "ce-type": type_,
            "ce-source": "//tests/e2e/test_gcp_e2e",
            "ce-specversion": "1.0",
            "content-type": "application/json",
        }
        future = self.pub.publish(self.topic(topic), json.dumps(data).encode(), **attributes)
        return str(future.result(timeout=30))

    def create_topic(self, name: str) -> None:
        from google.api_core.exceptions import AlreadyExists

        with contextlib.suppress(AlreadyExists):
            self.pub.create_topic(name=self.topic(name))

    def create_subscription(self, name: str, topic: str, *, push_endpoint: str = "") -> None:
        request: dict[str, Any] = {
            "name": self.subscription(name),
            "topic": self.topic(topic),
            "ack_deadline_seconds": 10,
        }
        if push_endpoint:
            request["push_config"] = {"push_endpoint": push_endpoint}
        self.sub.create_subscription(request=request)

    def pull(self, name: str, n: int, *, timeout_s: float) -> list[Any]:
        """Pull and ack until ``n`` messages came or ``timeout_s`` passed."""
        from google.api_core.exceptions import DeadlineExceeded

        got: list[Any] = []
        give_up = time.monotonic() + timeout_s
        while len(got) < n and (left := give_up - time.monotonic()) > 0:
            try:
                response = self.sub.pull(
                    subscription=self.subscription(name),
                    max_messages=n - len(got),
                    timeout=max(1.5, min(5.0, left)),
                    retry=None,
                )
            except DeadlineExceeded:  # real Pub/Sub: nothing arrived in time
                continue
            received = list(response.received_messages)
            if received:
                self.sub.acknowledge(
                    subscription=self.subscription(name), ack_ids=[m.ack_id for m in received]
                )
                got += received
        return got

    def delete_everything_named(self, marker: str) -> None:
        """Delete the subscriptions and topics whose names contain ``marker``."""
        project = f"projects/{self.project}"
        for s in self.sub.list_subscriptions(project=project, timeout=30):
            if marker in s.name:
                self.sub.delete_subscription(subscription=s.name, timeout=30)
        for t in self.pub.list_topics(project=project, timeout=30):
            if marker in t.name:
                self.pub.delete_topic(topic=t.name, timeout=30)

    def close(self) -> None:
        self.pub.stop()
        self.sub.close()


@dataclass
class Gcp:
    """One test's Pub/Sub project, broker URL, unique name suffix, clients and CLI."""

    project: str
    emulator: str | None  # HOST:PORT, or None against a real project
    url: str
    suffix: str
    raw: Raw
    cli: Cli

    def name(self, stem: str) -> str:
        """A name of this test only (Pub/Sub names start with a letter)."""
        return f"{stem}-{self.suffix}"

    def with_option(self, option: str) -> str:
        """The broker URL with one more ``?key=value`` option."""
        return f"{self.url}{'&' if '?' in self.url else '?'}{option}"

    def write(self, filename: str, text: str) -> None:
        (self.cli.cwd / filename).write_text(text)

    def scorebus(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """``scorebus ARGS --broker URL`` in the test's folder; a non-zero exit fails."""
        return self.cli.run(*args, "--broker", self.url, **kwargs)


@pytest.fixture
def gcp(bare_cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gcp]:
    """The emulator (a fresh project on it), or the real project named by the environment."""
    real = os.environ.get(REAL_PROJECT)
    emulator: str | None
    if real:
        monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
        project, emulator, url = real, None, f"pubsub://{real}"
    else:
        emulator = emulator_host()
        project = scratch_project(emulator)
        url = f"pubsub://{project}?emulator={emulator}"
        # Google's clients in this process only; the CLI must find the emulator by its URL.
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulator)
    bare_cli.env.pop("PUBSUB_EMULATOR_HOST", None)
    bare_cli.env["COLUMNS"] = "200"  # rich tables: one line per row
    suffix = uuid.uuid4().hex[:8]
    raw = Raw(project)
    try:
        yield Gcp(project, emulator, url, suffix, raw, bare_cli)
    finally:
        if real:
            raw.delete_everything_named(suffix)
        raw.close()


def _stopped_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("stopped:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


# --- publish -> scorebus run -> results store and output topic ----------------------

SCORER_APP = """
import msgspec
from scorebus import App, Batch


class Reading(msgspec.Struct):
    device: str
    celsius: float


app = App({app!r})


@app.scorer(subscribe={topic!r}, schema=Reading, publish={out!r},
            batch=Batch(max_size=8, max_wait_ms=20))
def overheat(readings, _):
    return [{{"hot": r.celsius > 30.0}} for r in readings]
"""


def test_published_events_are_scored_stored_and_republished_once(gcp: Gcp) -> None:
    topic, out, app = gcp.name("readings"), gcp.name("alerts"), gcp.name("plant")
    watch = gcp.name("alerts-watch")
    gcp.write("pipeline.py", SCORER_APP.format(app=app, topic=topic, out=out))
    # Pub/Sub keeps nothing published before a subscription exists: create it first.
    made = gcp.scorebus("topics", "create", topic, "--subscription", f"{app}.overheat")
    assert f"created subscription '{app}.overheat'" in made.stderr
    gcp.raw.create_topic(out)
    gcp.raw.create_subscription(watch, out)

    readings = {f"reading-{i}-{gcp.suffix}": 25.0 + i for i in range(12)}
    for event_id, celsius in readings.items():
        gcp.raw.publish(
            topic, {"device": "d1", "celsius": celsius}, event_id=event_id, type_="plant.reading"
        )
    # A producer's retry: the same CloudEvent id in a new Pub/Sub message.
    first = next(iter(readings))
    gcp.raw.publish(
        topic, {"device": "d1", "celsius": readings[first]}, event_id=first, type_="plant.reading"
    )

    proc = gcp.scorebus("run", "pipeline:app", "--until-idle", "3", timeout=RUN_TIMEOUT_S)
    assert "dead-lettered 0" in _stopped_line(proc)

    rows = gcp.cli.query(
        "scores.db", "SELECT event_id, output FROM results WHERE scorer = ?", ["overheat"]
    )
    assert sorted(r[0] for r in rows) == sorted(readings)  # keyed by ce-id: one row each
    assert {r[0]: json.loads(r[1]) for r in rows} == {
        event_id: {"hot": celsius > 30.0} for event_id, celsius in readings.items()
    }

    results = gcp.raw.pull(watch, len(readings), timeout_s=30)
    results += gcp.raw.pull(watch, 100, timeout_s=3)  # anything beyond one per result
    bodies = [json.loads(m.message.data) for m in results]
    assert sorted(b["event_id"] for b in bodies) == sorted(readings)
    assert all(b["result"] == {"hot": readings[b["event_id"]] > 30.0} for b in bodies)
    attributes = [m.message.attributes for m in results]
    assert {a["ce-type"] for a in attributes} == {f"{app}.overheat.scored"}
    assert len({a["ce-id"] for a in attributes}) == len(readings)


# --- emulator push -> functions-framework -> results ----------------------------------

FUNCTION_APP = """
import msgspec
from scorebus import App


class Order(msgspec.Struct):
    order: str
    amount: float


app = App({app!r})


@app.scorer(subscribe={topic!r}, schema=Order, name="price")
def price(orders, _):
    with open("calls.log", "a") as calls:  # the test's window on every delivery scored
        calls.writelines(o.order + "\\n" for o in orders)
    return [{{"total": round(o.amount * 1.2, 2)}} for o in orders]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def function_server(root: Path) -> Iterator[str]:
    """``functions-framework`` serving ``root/main.py``; yields its URL, stops it after."""
    port = _free_port()
    log = (root / "function.log").open("wb")
    env = clean_env(
        SCOREBUS_STORE=f"sqlite:///{root}/scores.db",
        SCOREBUS_REGISTRY=str(root / ".scorebus" / "models"),
    )
    env.pop("PUBSUB_EMULATOR_HOST", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "functions_framework",
            "--target",
            "score",
            "--source",
            "main.py",
            "--signature-type",
            "cloudevent",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url, timeout=1)  # any answer: the server is up
                break
            except httpx.TransportError:
                assert proc.poll() is None, (root / "function.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "functions-framework did not start in 60 s"
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def _wait_for(what: str, check: Any, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            tail = log.read_text()[-3000:] if log.exists() else ""
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}\n{tail}")
        time.sleep(0.2)


def test_a_push_subscription_feeds_a_cloud_function_once_per_event(gcp: Gcp) -> None:
    if gcp.emulator is None:
        pytest.skip("emulator only: real Pub/Sub pushes only to public HTTPS endpoints")
    root = gcp.cli.cwd
    topic, app = gcp.name("orders"), gcp.name("shop")
    gcp.write("pipeline.py", FUNCTION_APP.format(app=app, topic=topic))
    gcp.write("main.py", MAIN)
    store, calls = root / "scores.db", root / "calls.log"

    def results() -> list[tuple[str, Any]]:
        if not store.exists():
            return []
        with contextlib.closing(sqlite3.connect(store, timeout=30)) as conn:
            rows = conn.execute("SELECT event_id, output FROM results ORDER BY event_id").fetchall()
        return [(r[0], json.loads(r[1])) for r in rows]

    with function_server(root) as url:
        gcp.raw.create_topic(topic)
        # The emulator pushes the raw push body ({"message": ..., "subscription": ...});
        # functions-framework turns it into a messagePublished CloudEvent.
        gcp.raw.create_subscription(gcp.name("orders-push"), topic, push_endpoint=url)
        orders = {f"order-{i}-{gcp.suffix}": 10.0 * (i + 1) for i in range(5)}
        for event_id, amount in orders.items():
            gcp.raw.publish(
                topic, {"order": event_id, "amount": amount}, event_id=event_id, type_="shop.order"
            )
        twice = next(iter(orders))
        gcp.raw.publish(
            topic, {"order": twice, "amount": orders[twice]}, event_id=twice, type_="shop.order"
        )
        log = root / "function.log"
        _wait_for("a result per order", lambda: len(results()) >= len(orders), 60, log)
        # Both deliveries of the duplicate reached the scorer ...
        _wait_for(
            "the duplicate's second delivery",
            lambda: calls.exists() and calls.read_text().split().count(twice) == 2,
            60,
            log,
        )
    # ... and made one row: the store is keyed by the CloudEvent id.
    assert results() == sorted(
        (event_id, {"total": round(amount * 1.2, 2)}) for event_id, amount in orders.items()
    )


# --- always failing transiently -> dead-letter topic and scorebus dlq --------------------

FAILING_APP = """
from scorebus import App, RetryPolicy
from scorebus.errors import ModelUnavailable

app = App({app!r})
# No backoff of scorebus's own: a failure is nacked at once and the subscription's
# retry policy (1-2 s) spaces the redeliveries.
now = dict(initial_backoff_s=0.0, max_backoff_s=0.0)


@app.on("job.start", topic={topic!r}, retry=RetryPolicy(max_attempts=5, **now))
def gives_up(event, ctx):
    raise ModelUnavailable("model endpoint down")


@app.on("job.start", topic={topic!r}, retry=RetryPolicy(max_attempts=10, **now))
def keeps_trying(event, ctx):
    raise ModelUnavailable("model endpoint down")
"""


def test_a_handler_that_always_fails_ends_in_the_dead_letter_topic(gcp: Gcp) -> None:
    topic, app = gcp.name("jobs"), gcp.name("train")
    ours, native = f"{app}.gives_up", f"{app}.keeps_trying"
    gcp.write("pipeline.py", FAILING_APP.format(app=app, topic=topic))
    policy = ("--max-delivery-attempts", "5", "--min-backoff", "1", "--max-backoff", "2")
    for name in (ours, native):
        gcp.scorebus(
            "topics", "create", topic, "--subscription", name, "--ack-deadline", "10", *policy
        )
    # What Pub/Sub itself holds, seen through Google's client.
    for name in (ours, native):
        sub = gcp.raw.sub.get_subscription(subscription=gcp.raw.subscription(name))
        assert sub.dead_letter_policy.dead_letter_topic == gcp.raw.topic(f"{name}.dead-letter")
        assert sub.dead_letter_policy.max_delivery_attempts == 5
        backoff = (sub.retry_policy.minimum_backoff, sub.retry_policy.maximum_backoff)
        assert [b.total_seconds() for b in backoff] == [1.0, 2.0]
        assert sub.ack_deadline_seconds == 10
    listed = gcp.cli.json("topics", "list", "--json", "--broker", gcp.url)
    subs = {s["name"]: s for s in listed["subscriptions"]}
    assert (subs[ours]["dead_letter_topic"], subs[ours]["max_delivery_attempts"]) == (
        f"{ours}.dead-letter",
        5,
    )

    event_id = f"job-{gcp.suffix}"
    gcp.raw.publish(topic, {"dataset": "d1"}, event_id=event_id, type_="job.start")
    proc = gcp.scorebus(
        "run", "pipeline:app", "--create", "--until-idle", "6", timeout=RUN_TIMEOUT_S
    )
    # --create found the subscriptions and warned about the one Pub/Sub gives up on first.
    assert f"subscription '{ours}' on topic '{topic}'" in proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and native in warnings[0], proc.stderr
    assert "dead-lettered 1," in _stopped_line(proc)  # scorebus's own: 'gives_up' only

    # scorebus's path: on the fifth failure (its RetryPolicy) it dead-letters itself.
    (letter,) = gcp.raw.pull(f"{ours}.dead-letter", 1, timeout_s=20)
    attributes = dict(letter.message.attributes)
    assert (
        attributes["ce-id"],
        attributes["scorebus-reason"],
        attributes["scorebus-attempts"],
    ) == (
        event_id,
        "max_attempts",
        "5",
    )
    assert attributes["scorebus-error"] == "model_unavailable: model endpoint down"
    assert "CloudPubSubDeadLetterSourceDeliveryCount" not in attributes
    # Pub/Sub's path: after five failed deliveries it forwards the message itself.
    (forwarded,) = gcp.raw.pull(f"{native}.dead-letter", 1, timeout_s=20)
    attributes = dict(forwarded.message.attributes)
    assert attributes["ce-id"] == event_id
    assert attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
    assert "scorebus-reason" not in attributes
    assert json.loads(forwarded.message.data) == {"dataset": "d1"}
    # Each ends there exactly once.
    assert gcp.raw.pull(f"{ours}.dead-letter", 10, timeout_s=2) == []
    assert gcp.raw.pull(f"{native}.dead-letter", 10, timeout_s=2) == []

    letters = gcp.cli.json("dlq", "list", "--json", "--broker", gcp.url)
    assert [(d["subscription"], d["event_id"], d["reason"], d["attempts"]) for d in letters] == [
        (ours, event_id, "max_attempts", 5)
    ]
    table = gcp.scorebus("dlq", "list").stdout
    assert event_id in table and "max_attempts" in table


# --- run --create, topics create/list ------------------------------------------------

CREATE_APP = """
from scorebus import App

app = App({app!r}, events_topic={events!r})


@app.scorer(subscribe={topic!r}, publish={out!r}, ack_deadline_s=20)
def score(events, _):
    return [{{"ok": True}} for _ in events]


@app.on("thing.happened")
def react(event, ctx):
    pass
"""


def test_run_create_makes_the_apps_topics_and_subscriptions(gcp: Gcp) -> None:
    topic, out, events, app = (gcp.name(s) for s in ("input", "output", "events", "make"))
    gcp.write("pipeline.py", CREATE_APP.format(app=app, topic=topic, out=out, events=events))
    url = gcp.with_option("max_delivery_attempts=7")
    proc = gcp.cli.run(
        "run",
        "pipeline:app",
        "--create",
        "--until-idle",
        "1",
        "--broker",
        url,
        timeout=RUN_TIMEOUT_S,
    )
    assert f"created output topic '{out}'" in proc.stderr
    assert "warning:" not in proc.stderr  # RetryPolicy's 5 attempts come before Pub/Sub's 7

    listed = gcp.cli.json("topics", "list", "--json", "--broker", url)
    subs = {s["name"]: s for s in listed["subscriptions"]}
    assert (subs[f"{app}.score"]["topic"], subs[f"{app}.score"]["ack_deadline_s"]) == (topic, 20)
    assert (subs[f"{app}.react"]["topic"], subs[f"{app}.react"]["ack_deadline_s"]) == (events, 300)
    for name in (f"{app}.score", f"{app}.react"):
        assert (subs[name]["dead_letter_topic"], subs[name]["max_delivery_attempts"]) == (
            f"{name}.dead-letter",
            7,
        )
    assert {topic, out, events} <= set(listed["topics"])

    again = gcp.scorebus("topics", "create", topic, "--subscription", f"{app}.score")
    assert f"kept existing subscription '{app}.score'" in again.stderr
    table = gcp.scorebus("topics", "list").stdout
    assert f"{app}.score" in table
    (lonely,) = [line for line in table.splitlines() if "topics without subscriptions:" in line]
    assert out in lonely.split(": ", 1)[1].split(", ")


# --- bad input: one clear line, no server needed ----------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(
            ("topics", "create", "orders", "--broker", "sqlite:///.scorebus/bus.db"),
            "creates its topics and subscriptions on first use",
            id="other-broker-create",
        ),
        pytest.param(
            ("topics", "list", "--broker", "redis://127.0.0.1:6379"),
            "creates its topics and subscriptions on first use",
            id="other-broker-list",
        ),
        pytest.param(
            ("topics", "create", "orders", "-s", "orders-sub", "--max-delivery-attempts", "3"),
            "5-100",
            id="too-few-attempts",
        ),
        pytest.param(
            ("topics", "create", "orders", "--ack-deadline", "30"),
            "add --subscription NAME",
            id="policy-without-subscription",
        ),
        pytest.param(
            ("topics", "create", "orders", "-s", "orders-sub", "--dead-letter-topic", "graveyard"),
            "orders-sub.dead-letter",
            id="other-dead-letter-topic",
        ),
        pytest.param(
            ("topics", "create", "orders", "-s", "sub", "--min-backoff", "9", "--max-backoff", "3"),
            "more than --max-backoff",
            id="backoff-inverted",
        ),
    ],
)
def test_topics_misuse_is_one_clear_line(
    bare_cli: Cli, args: tuple[str, ...], expected: str
) -> None:
    if "--broker" not in args:  # a Pub/Sub URL nothing listens on: the flags fail first
        args = (*args, "--broker", "pubsub://nowhere?emulator=127.0.0.1:9")
    proc = bare_cli.run(*args, check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert (proc.returncode, len(lines)) == (2, 1), proc.stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]


def test_run_create_on_another_broker_says_there_is_nothing_to_create(bare_cli: Cli) -> None:
    bare_cli.cwd.joinpath("pipeline.py").write_text(
        "from scorebus import App\napp = App('local')\n"
        "@app.on('x.y', topic='things')\ndef react(event, ctx):\n    pass\n"
    )
    proc = bare_cli.run("run", "pipeline:app", "--create", "--until-idle", "0.5")
    assert "creates topics and subscriptions on first use" in proc.stderr
    assert "stopped:" in proc.stderr
