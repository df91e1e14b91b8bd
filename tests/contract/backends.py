"""Broker and sink backends that join the contract suites.

Each server-backed backend lives in its own module ``tests/contract/backend_<name>.py``
defining ``BROKER`` (or ``SINK``): a ``pytest.param`` whose value is a factory
``(tmp_path) -> Broker`` (or ``-> Sink``), and ``URL``: a ``pytest.param`` whose
value is ``(tmp_path) -> broker URL`` for the worker-process contract; each calls
``tests.servers.require_server`` inside the factory so a missing server skips
locally and fails under CI. Adding a backend is adding a file.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent


def _modules() -> list[Any]:
    return [
        importlib.import_module(f"tests.contract.{p.stem}")
        for p in sorted(_HERE.glob("backend_*.py"))
    ]


def broker_params() -> list[Any]:
    return [m.BROKER for m in _modules() if hasattr(m, "BROKER")]


def url_params() -> list[Any]:
    """Broker URL factories ``(tmp_path) -> str`` for the worker-process contract."""
    return [m.URL for m in _modules() if hasattr(m, "URL")]


def sink_params() -> list[Any]:
    return [m.SINK for m in _modules() if hasattr(m, "SINK")]
