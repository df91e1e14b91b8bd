"""End-to-end fixtures: the ``scorebus`` command run as a user runs it.

Every command is ``python -m scorebus.cli.main ...`` in a subprocess whose
current directory is the test's ``tmp_path``, so the embedded state lands in
``tmp_path/.scorebus``. ``SCOREBUS_*`` variables of the outer environment are
dropped. Training the demo model takes a few seconds, so it is trained once per
session and its registry folder copied into each test's state directory.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_support import Cli, clean_env


@pytest.fixture(scope="session")
def trained_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry folder holding the demo model ``fraud`` v1 (champion), trained once."""
    root = tmp_path_factory.mktemp("registry") / "models"
    code = (
        "import sys\n"
        "from scorebus.models.demo import ensure_demo_model\n"
        "from scorebus.models.registry import Registry\n"
        "ensure_demo_model(Registry(sys.argv[1]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(root)],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    assert (root / "fraud" / "aliases.json").is_file()
    return root


@pytest.fixture
def cli(tmp_path: Path, trained_registry: Path) -> Cli:
    """A fresh working directory whose ``.scorebus/models`` already holds the demo model."""
    shutil.copytree(
        trained_registry, tmp_path / ".scorebus" / "models", ignore=shutil.ignore_patterns(".locks")
    )
    return Cli(tmp_path)


@pytest.fixture
def bare_cli(tmp_path: Path) -> Cli:
    """A fresh working directory with no state at all."""
    return Cli(tmp_path)
