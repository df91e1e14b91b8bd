"""``scorebus workflows``: an app's routing graph as a tree, a mermaid diagram or JSON."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.tree import Tree

from ..app.graph import Graph, build_graph, to_mermaid
from ..app.loader import load_app
from .common import JsonOpt, out, print_json


def _name(node: str) -> str:
    return node.partition(":")[2]


def render_tree(graph: Graph) -> Tree:
    """Topics, then what consumes each, then what that stores, publishes and emits."""
    tree = Tree(
        f"[bold]app {escape(graph.app)}[/bold] (events topic: {escape(graph.events_topic)})"
    )
    for topic in graph.topics:
        branch = tree.add(f"[cyan]topic {escape(topic)}[/cyan]")
        if not any(s.topic == topic for s in graph.scorers) and not any(
            h.topic == topic for h in graph.handlers
        ):
            branch.add("[dim]nothing in this app consumes it[/dim]")
        for s in (s for s in graph.scorers if s.topic == topic):
            model = f" (model {escape(s.model)})" if s.model else ""
            node = branch.add(f"[bold]scorer {escape(s.name)}[/bold]{model}")
            if s.store is not None:
                where = "the worker's store" if s.store == "default" else s.store
                node.add(f"stores results -> {escape(where)}")
            if s.publish is not None:
                node.add(f"publishes {escape(s.result_type)} -> topic {escape(s.publish)}")
        for h in (h for h in graph.handlers if h.topic == topic):
            emits = f" -> emits {escape(', '.join(h.emits))}" if h.emits else ""
            branch.add(
                f"on {escape(', '.join(h.types))} -> [bold]handler {escape(h.name)}[/bold]{emits}"
            )
    if graph.chains:
        chains = tree.add("[bold]chains[/bold]")
        for chain in graph.chains:
            text = " -> ".join(_name(step) for step in chain.steps)
            chains.add(
                escape(text)
                + (" [yellow](loop: stopped at max_hops)[/yellow]" if chain.loop else "")
            )
    return tree


def workflows(
    app_ref: Annotated[str, typer.Argument(metavar="MODULE:APP", help="e.g. my_pipeline:app")],
    mermaid: Annotated[
        bool, typer.Option("--mermaid", help="Print a mermaid flowchart instead of a tree.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Show the routing graph: topics, scorers, handlers, the types they emit and their chains."""
    graph = build_graph(load_app(app_ref))
    if json_out:
        print_json(graph.to_dict())
    elif mermaid:
        typer.echo(to_mermaid(graph), nl=False)
    else:
        out.print(render_tree(graph), highlight=False)
