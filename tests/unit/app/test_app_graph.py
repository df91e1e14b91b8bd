"""The routing graph of an app (``scorebus workflows``): edges, chains, mermaid, JSON."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
import pytest

from scorebus.app import App
from scorebus.app.graph import build_graph, to_mermaid
from scorebus.errors import ConfigError
from scorebus.events import Event
from scorebus.runtime.spec import HandlerContext


def noop(event: Event, ctx: HandlerContext) -> None:
    """A handler body: the graph only reads the registrations."""


def results(events: list[Any], scores: Any) -> list[dict[str, Any]]:
    return [{} for _ in events]


def lifecycle_app() -> App:
    app = App("fraud")
    app.scorer(
        subscribe="transactions",
        model="fraud@champion",
        publish="scores",
        sink="postgresql://scorer:secret@db:5432/scores",
        name="score",
    )(results)
    app.scorer(subscribe="transactions", model="fraud@challenger", name="shadow")(results)
    app.on("fraud.score.scored", topic="scores", name="alert", emits=["alert.raised"])(noop)
    app.on("transactions", topic="transactions", name="drift", emits="drift.detected")(noop)
    app.on("data.arrived", "drift.detected", name="train", emits=("model.trained",))(noop)

    def promote(event: Event, ctx: HandlerContext) -> None:
        """Declares its outputs as an attribute, as the built-in jobs do."""

    promote.emits = ("model.promoted", "model.rejected")  # type: ignore[attr-defined]
    app.on("model.trained")(promote)
    return app


def _edges(graph: Any, kind: str) -> set[tuple[str, str, str]]:
    return {(e.source, e.target, e.label) for e in graph.edges if e.kind == kind}


def test_scorers_subscribe_store_and_publish() -> None:
    graph = build_graph(lifecycle_app())

    assert graph.topics == ["events", "scores", "transactions"]
    assert _edges(graph, "subscribe") >= {
        ("topic:transactions", "scorer:score", ""),
        ("topic:transactions", "scorer:shadow", ""),
        ("topic:scores", "handler:alert", "fraud.score.scored"),
        ("topic:events", "handler:train", "data.arrived, drift.detected"),
    }
    assert _edges(graph, "store") == {
        ("scorer:score", "store:postgresql://scorer:***@db:5432/scores", ""),
        ("scorer:shadow", "store:default", ""),
    }
    assert _edges(graph, "publish") == {("scorer:score", "topic:scores", "fraud.score.scored")}
    (scorer, shadow) = graph.scorers
    assert (scorer.model, scorer.publish, shadow.model, shadow.publish) == (
        "fraud@champion",
        "scores",
        "fraud@challenger",
        None,
    )


def test_emitted_types_are_joined_to_the_handlers_that_consume_them() -> None:
    graph = build_graph(lifecycle_app())

    assert _edges(graph, "emit") == {
        ("scorer:score", "type:fraud.score.scored", ""),
        ("handler:alert", "type:alert.raised", ""),
        ("handler:drift", "type:drift.detected", ""),
        ("handler:train", "type:model.trained", ""),
        ("handler:promote", "type:model.promoted", ""),
        ("handler:promote", "type:model.rejected", ""),
    }
    assert _edges(graph, "trigger") == {
        ("type:fraud.score.scored", "handler:alert", ""),
        ("type:drift.detected", "handler:train", ""),
        ("type:model.trained", "handler:promote", ""),
    }
    promote = next(h for h in graph.handlers if h.name == "promote")
    assert promote.emits == ["model.promoted", "model.rejected"]


def test_chains_run_from_each_way_in_to_each_end() -> None:
    chains = [c.steps for c in build_graph(lifecycle_app()).chains]

    train = ["handler:train", "type:model.trained", "handler:promote"]
    assert ["type:data.arrived", *train, "type:model.promoted"] in chains
    assert ["type:data.arrived", *train, "type:model.rejected"] in chains
    drift = ["type:transactions", "handler:drift", "type:drift.detected"]
    assert [*drift, *train, "type:model.promoted"] in chains
    assert [
        "topic:transactions",
        "scorer:score",
        "type:fraud.score.scored",
        "handler:alert",
        "type:alert.raised",
    ] in chains
    assert len(chains) == 5


def test_a_loop_is_marked() -> None:
    app = App("loops")
    app.on("tick", emits=["tick"], name="again")(noop)

    (chain,) = build_graph(app).chains

    assert chain.steps == ["type:tick", "handler:again", "type:tick"]
    assert chain.loop


def test_mermaid_draws_every_node_and_edge() -> None:
    graph = build_graph(lifecycle_app())

    text = to_mermaid(graph)

    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    nodes = {n for e in graph.edges for n in (e.source, e.target)}
    arrows = [line for line in lines if "-->" in line or "-.->" in line]
    assert len(arrows) == len(graph.edges)
    assert len(lines) == 1 + len(nodes) + len(graph.edges)
    assert any('>"transactions"]' in line for line in lines)
    assert any('[["score<br/>fraud@champion"]]' in line for line in lines)
    assert any('(["model.trained"])' in line for line in lines)
    assert any('("promote")' in line for line in lines)
    assert any('[("results store")]' in line for line in lines)
    assert any('-->|"data.arrived, drift.detected"|' in line for line in arrows)
    # Every edge joins two declared node ids.
    declared = {re.match(r"\s*(\w+)", line)[1] for line in lines[1:] if line not in arrows}  # type: ignore[index]
    assert len(declared) == len(nodes)
    for line in arrows:
        parts = line.split()
        assert parts[0] in declared and parts[-1] in declared


def test_the_graph_is_json() -> None:
    graph = build_graph(lifecycle_app())

    data = json.loads(msgspec.json.encode(graph.to_dict()))

    assert data["app"] == "fraud" and data["events_topic"] == "events"
    assert {"source": "type:model.trained", "target": "handler:promote", "kind": "trigger",
            "label": ""} in data["edges"]  # fmt: skip
    assert data["handlers"][-1] == {
        "name": "promote",
        "topic": "events",
        "subscription": "fraud.promote",
        "types": ["model.trained"],
        "emits": ["model.promoted", "model.rejected"],
    }


@pytest.mark.parametrize("emits", [[""], [3], 5])
def test_bad_emits_are_refused(emits: Any) -> None:
    app = App("bad-emits")
    with pytest.raises(ConfigError, match="emits="):
        app.on("x.happened", emits=emits)(noop)


def test_a_handler_without_emits_declares_none() -> None:
    app = App("plain")
    app.on("x.happened")(noop)

    (spec,) = app.handlers

    assert spec.emits == frozenset()
    (chain,) = build_graph(app).chains
    assert chain.steps == ["type:x.happened", "handler:noop"]
