"""Import an app from ``MODULE:ATTRIBUTE`` with errors a user can act on."""

from __future__ import annotations

import importlib
import os
import sys

from ..errors import ConfigError
from .app import App


def load_object(ref: str, what: str = "object") -> object:
    """Import ``module.path:attribute`` (the current directory is importable).

    Raises:
        ConfigError: the reference is malformed, or the module or attribute is missing.
    """
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{what} reference {ref!r}: expected MODULE:ATTRIBUTE")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only the module itself (or a parent package) missing means a wrong reference;
        # anything else is a dependency of the user's module that failed to import.
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ConfigError(
                f"cannot import module {module_name!r} for {what} {ref!r}: is it on PYTHONPATH "
                "or in the current directory?"
            ) from exc
        raise ConfigError(f"importing {module_name!r} failed: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise ConfigError(f"module {module_name!r} has no attribute {attr!r}") from exc


def load_app(ref: str) -> App:
    """Import ``module.path:attribute`` (the current directory is importable).

    Raises:
        ConfigError: the reference is malformed, the module or attribute is missing,
            or the attribute is not an ``App``.
    """
    if ":" not in ref or ref.startswith(":") or ref.endswith(":"):
        raise ConfigError(f"app reference {ref!r}: expected MODULE:ATTRIBUTE, e.g. my_pipeline:app")
    app = load_object(ref, "app")
    if not isinstance(app, App):
        raise ConfigError(f"{ref!r} is a {type(app).__name__}, not a scorebus App")
    return app
