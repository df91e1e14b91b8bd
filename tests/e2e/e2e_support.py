"""Helpers of the end-to-end tests: run the ``scorebus`` command as a user runs it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-m", "scorebus.cli.main"]
DEFAULT_TIMEOUT_S = 60.0


def clean_env(**extra: str) -> dict[str, str]:
    """The outer environment without ``SCOREBUS_*`` (and colour forcing), plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SCOREBUS_") and k not in {"FORCE_COLOR", "PY_COLORS"}
    }
    env["NO_COLOR"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Cli:
    """Runs ``scorebus`` commands in one working directory."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.state = cwd / ".scorebus"
        self.env = clean_env()

    def run(
        self,
        *args: str,
        stdin: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run one command to completion; with ``check`` a non-zero exit fails the test."""
        proc = subprocess.run(
            [*CLI, *args],
            cwd=self.cwd,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check:
            assert proc.returncode == 0, (
                f"scorebus {' '.join(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
            )
        return proc

    def json(self, *args: str, timeout: float = DEFAULT_TIMEOUT_S) -> Any:
        """Run a ``--json`` command and decode its stdout (exactly one JSON document)."""
        proc = self.run(*args, timeout=timeout)
        return json.loads(proc.stdout)

    def popen(self, *args: str, **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start a command in the background; the caller waits for it."""
        return subprocess.Popen(
            [*CLI, *args],
            cwd=self.cwd,
            env=self.env,
            stdout=kwargs.pop("stdout", subprocess.PIPE),
            stderr=kwargs.pop("stderr", subprocess.PIPE),
            **kwargs,
        )

    def query(self, db: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Read-only SQL on ``.scorebus/<db>`` (``bus.db`` or ``scores.db``)."""
        path = self.state / db
        assert path.exists(), f"{path} was not created"
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute(sql, tuple(params)).fetchall()
        finally:
            conn.close()
