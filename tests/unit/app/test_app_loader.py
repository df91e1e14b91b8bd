"""load_app: MODULE:ATTRIBUTE from the current directory, errors a user can act on."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scorebus.app import App, load_app
from scorebus.errors import ConfigError

WriteModule = Callable[[str, str], str]


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WriteModule]:
    """Write ``NAME.py`` into a fresh current directory; forget imported modules afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)

    def write(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(source)
        importlib.invalidate_caches()
        return name

    yield write
    for name in set(sys.modules) - before:
        if name.startswith("sbtest_"):
            del sys.modules[name]


def _unique() -> str:
    return f"sbtest_{uuid.uuid4().hex[:10]}"


def test_loads_an_app_from_the_current_directory(write_module: WriteModule) -> None:
    module = write_module(_unique(), "from scorebus import App\npipeline = App('loaded')\n")

    app = load_app(f"{module}:pipeline")

    assert isinstance(app, App)
    assert app.name == "loaded"


@pytest.mark.parametrize("ref", ["just_a_module", ":app", "module:", "", ":"])
def test_a_malformed_reference_is_a_config_error(ref: str) -> None:
    with pytest.raises(ConfigError, match="expected MODULE:ATTRIBUTE"):
        load_app(ref)


def test_a_missing_module_is_a_config_error(write_module: WriteModule) -> None:
    missing = _unique()

    with pytest.raises(ConfigError, match=f"cannot import module '{missing}'.*PYTHONPATH"):
        load_app(f"{missing}:app")


def test_a_missing_dependency_of_the_module_is_reported_as_such(
    write_module: WriteModule,
) -> None:
    dependency = _unique()
    module = write_module(f"{_unique()}_app", f"import {dependency}\n")

    with pytest.raises(ConfigError, match=f"importing '{module}' failed.*{dependency}"):
        load_app(f"{module}:app")


def test_a_missing_dependency_named_like_the_module_prefix_is_not_a_missing_module(
    write_module: WriteModule,
) -> None:
    # ``fraud_app.py`` exists but imports a ``fraud`` package that is not installed.
    dependency = _unique()
    module = write_module(f"{dependency}_app", f"import {dependency}\n")

    with pytest.raises(ConfigError, match=f"importing '{module}' failed.*{dependency}"):
        load_app(f"{module}:app")


def test_a_missing_attribute_is_a_config_error(write_module: WriteModule) -> None:
    module = write_module(_unique(), "from scorebus import App\napp = App('present')\n")

    with pytest.raises(ConfigError, match=f"module '{module}' has no attribute 'nope'"):
        load_app(f"{module}:nope")


def test_an_attribute_that_is_not_an_app_is_a_config_error(write_module: WriteModule) -> None:
    module = write_module(_unique(), "app = {'name': 'not an App'}\n")

    with pytest.raises(ConfigError, match=f"'{module}:app' is a dict, not a scorebus App"):
        load_app(f"{module}:app")
