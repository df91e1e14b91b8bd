"""Process settings, read once from ``SCOREBUS_*`` environment variables.

Precedence: an argument in code > a CLI flag > the environment > these defaults.
Nothing in scorebus writes to ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..models.registry import registry_location

STATE_DIR = ".scorebus"


@dataclass(frozen=True, kw_only=True)
class Settings:
    broker: str = f"sqlite:///{STATE_DIR}/bus.db"
    store: str = f"sqlite:///{STATE_DIR}/scores.db"
    registry: Path | str = Path(STATE_DIR) / "models"  # a folder, or gs://BUCKET/PREFIX
    trust_models: bool = False
    ack_deadline_s: float | None = None  # overrides every scorer's and handler's lease
    model_poll_s: float = 5.0  # how often followed model aliases are checked; 0: never
    workers: int | None = None  # worker processes; None: one per usable core (app/run.py)
    model_threads: int | None = None  # predict threads per worker; None: cores // workers

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        base = cls()
        return cls(
            broker=env.get("SCOREBUS_BROKER") or base.broker,
            store=env.get("SCOREBUS_STORE") or base.store,
            registry=env.get("SCOREBUS_REGISTRY") or base.registry,
            trust_models=(env.get("SCOREBUS_TRUST_MODELS", "").lower() in {"1", "true", "yes"}),
            ack_deadline_s=_float(env, "SCOREBUS_ACK_DEADLINE"),
            model_poll_s=_seconds(env, "SCOREBUS_MODEL_POLL", base.model_poll_s),
            workers=_count(env, "SCOREBUS_WORKERS"),
            model_threads=_count(env, "SCOREBUS_MODEL_THREADS"),
        )

    def __post_init__(self) -> None:
        # A gs:// URL stays a string (Path would fold its "//"); anything else is a Path.
        object.__setattr__(self, "registry", registry_location(self.registry))

    def override(self, **flags: Any) -> Settings:
        """Apply CLI flags that were given (``None`` means not given)."""
        return replace(self, **{k: v for k, v in flags.items() if v is not None})


def _seconds(env: Mapping[str, str], key: str, default: float) -> float:
    value = _float(env, key)
    if value is None:
        return default
    if value < 0:
        from ..errors import ConfigError

        raise ConfigError(f"{key}={env[key]!r}: expected seconds >= 0 (0 turns it off)")
    return value


def _count(env: Mapping[str, str], key: str) -> int | None:
    raw = env.get(key)
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        from ..errors import ConfigError

        raise ConfigError(f"{key}={raw!r}: expected a whole number >= 1")
    return value


def _float(env: Mapping[str, str], key: str) -> float | None:
    raw = env.get(key)
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        from ..errors import ConfigError

        raise ConfigError(f"{key}={raw!r}: expected a number of seconds") from None
