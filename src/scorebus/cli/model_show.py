"""``scorebus models show``: everything the registry knows about one version."""

from __future__ import annotations

import json
from typing import Annotated, Any

import msgspec
import typer
from rich.table import Table
from rich.text import Text

from ..models.registry import open_registry
from ..models.registry_base import ModelRegistry
from .common import JsonOpt, RegistryOpt, out, print_json, settings


def describe(registry: ModelRegistry, ref: str) -> dict[str, Any]:
    """The metadata of the version ``ref`` resolves to, its aliases and their history.

    Returns:
        Every ``meta.json`` field, ``ref``, ``location`` (where its files are),
        ``aliases`` (those pointing at this version) and ``alias_history``
        (per alias of the model: ``version`` now and ``previous`` holders, oldest first).

    Raises:
        ConfigError: Unknown name, version or alias (the message lists what exists).
    """
    mv = registry.resolve(ref)
    state = registry.alias_state(mv.name)
    fields = msgspec.structs.asdict(mv)
    fields["location"] = fields.pop("path")
    return {
        "ref": mv.ref,
        **fields,
        "aliases": sorted(a for a, v in state.aliases.items() if v == mv.version),
        "alias_history": {
            alias: {"version": state.aliases.get(alias), "previous": state.history.get(alias, [])}
            for alias in sorted(set(state.aliases) | set(state.history))
        },
    }


def show(
    ref: Annotated[str, typer.Argument(metavar="NAME[@VERSION|@ALIAS]", help="Model reference.")],
    json_out: JsonOpt = False,
    registry: RegistryOpt = None,
) -> None:
    """Every metadata field of one version: metrics, params, training data, aliases, history."""
    info = describe(open_registry(settings(registry=registry).registry), ref)
    if json_out:
        print_json(info)
        return
    table = Table(title=info["ref"], show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    data = info["training_data"]
    rows = {
        **{key: str(info[key]) for key in ("flavour", "file", "location", "created_at")},
        "features": ", ".join(info["features"]),
        "outputs": ", ".join(info["outputs"]),
        **{
            key: "\n".join(f"{k} = {v}" for k, v in sorted(info[key].items()))
            for key in ("metrics", "params")
        },
        "training_data": data if isinstance(data, str | None) else json.dumps(data, sort_keys=True),
        "aliases": ", ".join(info["aliases"]),
        "alias_history": "\n".join(_history(info["alias_history"])),
    }
    for key, value in rows.items():
        table.add_row(key, Text(value or ""))  # Text: values are not rich markup
    out.print(table)


def _history(history: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for alias, entry in history.items():
        now = entry["version"] or "(unset)"
        lines.append(f"{alias}: {' -> '.join([*entry['previous'], now])}")
    return lines
