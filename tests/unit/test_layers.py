"""Pins the import direction of the layers (DESIGN.md, STYLE.md "Layout").

    events < brokers, models, sinks < runtime < app < demo, gcp, serving, deploy, workflows < cli

A module may import its own layer and layers of a lower rank, never a peer of the
same rank (brokers, models and sinks do not know each other) nor anything above.
``scorebus.errors``, ``scorebus._sqlite`` and ``scorebus._extras`` are shared by every layer and import
no layer themselves. Lazy imports inside functions and ``TYPE_CHECKING`` blocks
count too: they are dependencies all the same.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import scorebus

PACKAGE_DIR = Path(scorebus.__file__).parent

RANK = {
    "events": 0,
    "brokers": 1,
    "models": 1,
    "sinks": 1,
    "runtime": 2,
    "app": 3,
    "demo": 4,
    "gcp": 4,
    "serving": 4,
    "deploy": 4,
    "workflows": 4,
    "cli": 5,
}
SHARED = {"errors", "_sqlite", "_extras"}
TOP = "scorebus"  # the package itself re-exports the app layer's public API
TOP_RANK = RANK["app"]


def module_name(path: Path, root: Path = PACKAGE_DIR) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, *, is_package: bool) -> Iterator[str]:
    """Every ``scorebus...`` module ``source`` imports, relative imports resolved."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == TOP)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base = ".".join(base_parts[: len(base_parts) - (node.level - 1)])
            else:
                base = ""
            target = ".".join(p for p in (base, node.module or "") if p)
            if target.split(".")[0] != TOP:
                continue
            if node.module is None:
                # ``from .. import errors``: each name is a module (or an attribute of base).
                yield from (f"{target}.{a.name}" for a in node.names)
            else:
                yield target


def layer_of(module: str) -> str | None:
    """``scorebus.brokers.sqlite`` -> ``brokers``; shared modules -> their own name."""
    parts = module.split(".")
    if parts[0] != TOP:
        return None
    return parts[1] if len(parts) > 1 else TOP


def rank_of(layer: str) -> int | None:
    if layer == TOP:
        return TOP_RANK
    return RANK.get(layer)


def violation(importer: str, imported: str) -> str | None:
    """Why ``importer`` must not import ``imported``, or ``None`` when it may."""
    src, dst = layer_of(importer), layer_of(imported)
    if src is None or dst is None:
        return None
    if dst == "cli" and src != "cli":
        return "nothing imports scorebus.cli"
    if src == dst and src != TOP:
        return None
    if dst in SHARED:
        return None
    if src in SHARED:
        return f"scorebus.{src} is shared by every layer and imports no layer"
    if src == TOP:
        return None
    src_rank, dst_rank = rank_of(src), rank_of(dst)
    if src_rank is None:
        return f"scorebus.{src} is not a known layer: add it to RANK in this test"
    if dst_rank is None:
        return f"scorebus.{dst} is not a known layer: add it to RANK in this test"
    if dst_rank == src_rank:
        return f"{src} and {dst} are peers and must not import each other"
    if dst_rank > src_rank:
        return f"{src} is below {dst}"
    return None


def all_modules() -> list[tuple[str, Path]]:
    return sorted((module_name(p), p) for p in PACKAGE_DIR.rglob("*.py"))


def offending_imports() -> list[str]:
    problems = []
    for module, path in all_modules():
        source = path.read_text(encoding="utf-8")
        for imported in imports_of(source, module, is_package=path.name == "__init__.py"):
            why = violation(module, imported)
            if why:
                problems.append(f"{module} -> {imported} ({why})")
    return problems


def test_every_import_points_down_the_layers() -> None:
    modules = [m for m, _ in all_modules()]
    assert "scorebus.events.envelope" in modules
    assert "scorebus.runtime.worker" in modules
    assert len(modules) > 30

    problems = offending_imports()

    assert not problems, "imports against the layer order:\n  " + "\n  ".join(problems)


def test_every_subpackage_is_a_known_layer() -> None:
    folders = {p.name for p in PACKAGE_DIR.iterdir() if (p / "__init__.py").exists()}

    assert folders <= set(RANK), f"unknown layers (add them to RANK): {folders - set(RANK)}"


# The checker itself must catch what it is meant to catch.


@pytest.mark.parametrize(
    ("module", "is_package", "source", "expected"),
    [
        ("scorebus.events.codec", False, "from ..errors import DecodeError", ["scorebus.errors"]),
        (
            "scorebus.brokers",
            True,
            "from .base import Broker\nfrom . import memory",
            ["scorebus.brokers.base", "scorebus.brokers.memory"],
        ),
        (
            "scorebus.runtime.worker",
            False,
            "def f():\n    from ..models.registry import Registry",
            ["scorebus.models.registry"],
        ),
        (
            "scorebus.app.run",
            False,
            "import scorebus.brokers.sqlite as s",
            ["scorebus.brokers.sqlite"],
        ),
        ("scorebus.sinks.sqlite", False, "from .. import _sqlite", ["scorebus._sqlite"]),
        ("scorebus.sinks.sqlite", False, "import numpy\nfrom msgspec import json", []),
    ],
)
def test_imports_are_resolved(
    module: str, is_package: bool, source: str, expected: list[str]
) -> None:
    assert list(imports_of(source, module, is_package=is_package)) == expected


@pytest.mark.parametrize(
    ("importer", "imported", "allowed"),
    [
        ("scorebus.brokers.sqlite", "scorebus.events.codec", True),
        ("scorebus.brokers.sqlite", "scorebus._sqlite", True),
        ("scorebus.sinks.base", "scorebus.errors", True),
        ("scorebus.runtime.scoring", "scorebus.models.base", True),
        ("scorebus.app.run", "scorebus.brokers", True),
        ("scorebus.cli.main", "scorebus.app", True),
        ("scorebus", "scorebus.app", True),
        ("scorebus.events.codec", "scorebus.brokers.base", False),
        ("scorebus.events.codec", "scorebus", False),
        ("scorebus.brokers.memory", "scorebus.sinks.base", False),
        ("scorebus.sinks.sqlite", "scorebus.models.base", False),
        ("scorebus.models.demo", "scorebus.runtime.config", False),
        ("scorebus.runtime.worker", "scorebus.app.settings", False),
        ("scorebus.app.app", "scorebus.demo", False),
        ("scorebus.demo", "scorebus.cli.main", False),
        ("scorebus", "scorebus.cli", False),
        ("scorebus.errors", "scorebus.events", False),
        ("scorebus._sqlite", "scorebus.brokers", False),
    ],
)
def test_the_rule(importer: str, imported: str, allowed: bool) -> None:
    assert (violation(importer, imported) is None) is allowed
