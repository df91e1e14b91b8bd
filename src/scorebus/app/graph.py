"""The routing graph of an app: what each scorer and handler consumes and emits.

Pure: built from the registrations alone, nothing is connected or run. Node ids
are ``KIND:NAME``:

- ``topic:T``: a broker topic;
- ``scorer:S``, ``handler:H``: the app's steps;
- ``store:URL``: where a scorer stores results (``store:default``: the worker's store);
- ``type:E``: an event type emitted inside the app (a handler's ``emits``, or a
  publishing scorer's result type that a handler consumes).

Edges, by kind: ``subscribe`` (topic -> scorer or handler; a handler's edge is
labelled with its event types), ``store`` (scorer -> store), ``publish`` (scorer
-> topic, labelled with the result type), ``emit`` (step -> type) and ``trigger``
(type -> each handler that consumes it). Emitted and consumed types are matched
by name: a handler publishes on its own topic unless it passes ``topic=``, which
the graph cannot see.

Chains follow the triggers from each type that enters the app from outside
(``data.arrived -> train -> model.trained -> promote -> model.promoted``); a
chain that comes back to a step already on it is marked as a loop, which the
runtime stops at ``max_hops``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

from ..runtime.spec import ScorerSpec
from .app import App

MAX_CHAINS = 100


class ScorerNode(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    topic: str
    subscription: str
    model: str | None
    store: str | None  # None: publish only
    publish: str | None
    result_type: str


class HandlerNode(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    topic: str
    subscription: str
    types: list[str]
    emits: list[str]


class Edge(msgspec.Struct, frozen=True):
    source: str
    target: str
    kind: str
    label: str = ""


class Chain(msgspec.Struct, frozen=True):
    steps: list[str]  # node ids, alternately types and steps
    loop: bool = False


class Graph(msgspec.Struct, frozen=True, kw_only=True):
    """Everything ``scorebus workflows`` shows; ``to_dict`` is its ``--json``."""

    app: str
    events_topic: str
    topics: list[str]
    scorers: list[ScorerNode]
    handlers: list[HandlerNode]
    edges: list[Edge]
    chains: list[Chain]

    def to_dict(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]

    def targets(self, source: str, kind: str | None = None) -> list[str]:
        """Node ids that edges from ``source`` (of ``kind``, if given) point at."""
        return [e.target for e in self.edges if e.source == source and kind in (None, e.kind)]


def _model_label(spec: ScorerSpec) -> str | None:
    model = spec.model
    if model is None or isinstance(model, str):
        return model
    name, version = getattr(model, "name", None), getattr(model, "version", None)
    if name is not None:
        return f"{name}@{version}" if version is not None else str(name)
    return f"{getattr(model, '__name__', type(model).__name__)}()"


def _store_label(sink: str | bool | None) -> str | None:
    if sink is False:
        return None
    if sink is None or sink is True:
        return "default"
    parts = urlsplit(sink)
    if parts.password is None:
        return sink
    netloc = f"{parts.username}:***@{parts.hostname or ''}" + (
        f":{parts.port}" if parts.port else ""
    )
    return urlunsplit(parts._replace(netloc=netloc))


def build_graph(app: App) -> Graph:
    """The routing graph of ``app``'s scorers and handlers."""
    scorers = [
        ScorerNode(
            name=s.name,
            topic=s.topic,
            subscription=s.subscription,
            model=_model_label(s),
            store=_store_label(s.sink),
            publish=s.publish,
            result_type=s.result_type,
        )
        for s in app.scorers
    ]
    handlers = [
        HandlerNode(
            name=h.name,
            topic=h.topic,
            subscription=h.subscription,
            types=sorted(h.types),
            emits=sorted(h.emits),
        )
        for h in app.handlers
    ]
    consumers: dict[str, list[str]] = defaultdict(list)
    for h in handlers:
        for t in h.types:
            consumers[t].append(f"handler:{h.name}")
    edges: list[Edge] = []
    for s in scorers:
        me = f"scorer:{s.name}"
        edges.append(Edge(f"topic:{s.topic}", me, "subscribe"))
        if s.store is not None:
            edges.append(Edge(me, f"store:{s.store}", "store"))
        if s.publish is not None:
            edges.append(Edge(me, f"topic:{s.publish}", "publish", s.result_type))
            if s.result_type in consumers:
                edges.append(Edge(me, f"type:{s.result_type}", "emit"))
    for h in handlers:
        me = f"handler:{h.name}"
        edges.append(Edge(f"topic:{h.topic}", me, "subscribe", ", ".join(h.types)))
        edges.extend(Edge(me, f"type:{t}", "emit") for t in h.emits)
    emitted = {e.target for e in edges if e.kind == "emit"}
    for t in sorted(emitted):
        edges.extend(Edge(t, target, "trigger") for target in consumers.get(t[5:], []))
    topics = {s.topic for s in scorers} | {h.topic for h in handlers}
    topics |= {s.publish for s in scorers if s.publish is not None}
    graph = Graph(
        app=app.name,
        events_topic=app.events_topic,
        topics=sorted(topics),
        scorers=scorers,
        handlers=handlers,
        edges=edges,
        chains=[],
    )
    return msgspec.structs.replace(graph, chains=_chains(graph, consumers))


def _chains(graph: Graph, consumers: dict[str, list[str]]) -> list[Chain]:
    """Paths of triggers from each way into the app's chained steps."""
    emitted = {e.target for e in graph.edges if e.kind == "emit"}
    starts = [[f"type:{t}"] for t in sorted(consumers) if f"type:{t}" not in emitted]
    starts += [
        [f"topic:{s.topic}", f"scorer:{s.name}"]
        for s in graph.scorers
        if f"type:{s.result_type}" in emitted
    ]
    chains: list[Chain] = []

    def walk(path: list[str]) -> None:
        if len(chains) >= MAX_CHAINS:
            return
        last = path[-1]
        if last.startswith("type:"):
            following = consumers.get(last[5:], [])
        else:
            following = graph.targets(last, "emit")
        if not following:
            chains.append(Chain(path))
        for node in following:
            if node in path:
                chains.append(Chain([*path, node], loop=True))
            else:
                walk([*path, node])

    for start in starts:
        walk(start)
    # Steps only reachable from each other (a loop with no way in) still get a chain.
    for h in graph.handlers:
        if not any(f"handler:{h.name}" in c.steps for c in chains):
            walk([f"type:{h.types[0]}"])
    return chains


_SHAPES = {
    "topic": ('>"', '"]'),
    "scorer": ('[["', '"]]'),
    "store": ('[("', '")]'),
    "handler": ('("', '")'),
    "type": ('(["', '"])'),
}
_ARROWS = {"emit": "-.->", "trigger": "-.->"}


def to_mermaid(graph: Graph) -> str:
    """A ``flowchart LR`` mermaid diagram of the graph (paste into any mermaid renderer)."""
    ids: dict[str, str] = {}

    def node_id(node: str) -> str:
        if node not in ids:
            kind, _, name = node.partition(":")
            safe = "".join(c if c.isalnum() else "_" for c in name)
            ids[node] = f"{kind}_{safe[:24]}_{len(ids)}"
        return ids[node]

    def quote(text: str) -> str:
        return text.replace('"', "#quot;")

    labels = {
        f"scorer:{s.name}": s.name + (f"<br/>{s.model}" if s.model else "") for s in graph.scorers
    }
    labels["store:default"] = "results store"
    lines = ["flowchart LR"]
    nodes = dict.fromkeys(n for e in graph.edges for n in (e.source, e.target))
    for node in nodes:
        kind, _, name = node.partition(":")
        left, right = _SHAPES[kind]
        lines.append(f"    {node_id(node)}{left}{quote(labels.get(node, name))}{right}")
    for e in graph.edges:
        arrow = _ARROWS.get(e.kind, "-->")
        label = f'|"{quote(e.label)}"|' if e.label else ""
        lines.append(f"    {node_id(e.source)} {arrow}{label} {node_id(e.target)}")
    return "\n".join(lines) + "\n"
