"""Import an optional backend, naming the pip command when its SDK is missing."""

from __future__ import annotations

import importlib
from typing import Any


def load_backend(package: str, module: str, attr: str, extra: str | None) -> Any:
    try:
        mod = importlib.import_module(f"{package}.{module}")
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("scorebus"):
            from .errors import ConfigError

            raise ConfigError(f"{attr} is not available in this version of scorebus") from exc
        if extra is None:
            raise
        raise ImportError(
            f"{attr} needs the {exc.name!r} package: pip install 'scorebus[{extra}]'"
        ) from exc
    return getattr(mod, attr)
