"""What the registry stores per version and per alias, and how it is (de)serialised.

``ModelVersion`` is ``meta.json`` plus the version's directory; ``AliasState``
is ``aliases.json``. Both are written atomically by the registry.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from ..errors import ConfigError
from ._fs import atomic_write_bytes
from .base import Model, Signature
from .loader import FLAVOURS, build_model, flavour_of
from .sklearn import PICKLE_SUFFIXES, SklearnModel

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ModelVersion(msgspec.Struct, frozen=True, kw_only=True):
    """One registered version; ``meta.json`` holds every field but ``path``."""

    name: str
    version: str
    flavour: str
    file: str
    features: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ("score",)
    metrics: dict[str, float] = {}
    params: dict[str, Any] = {}
    training_data: str | dict[str, Any] | None = None
    created_at: str = ""
    # Where the version lives, filled in when read, never stored: its directory,
    # or its gs:// URL in a Cloud Storage registry until fetched.
    path: str = ""

    @property
    def ref(self) -> str:
        """``name@version``, as recorded with every result."""
        return f"{self.name}@{self.version}"

    @property
    def file_path(self) -> Path:
        """Absolute path of the model file (of a local or fetched version)."""
        return Path(self.path) / self.file


class AliasState(msgspec.Struct):
    """``aliases.json``: alias -> version, and earlier holders for rollback."""

    aliases: dict[str, str] = {}
    # Most recent last, so rollback pops what the last promote replaced.
    history: dict[str, list[str]] = {}

    def move(self, alias: str, version: str) -> str:
        """Point ``alias`` at ``version``, keeping the previous holder; returns ``version``."""
        current = self.aliases.get(alias)
        if current != version:
            if current is not None:
                self.history.setdefault(alias, []).append(current)
            self.aliases[alias] = version
        return version

    def step_back(self, name: str, alias: str) -> str:
        """Point ``alias`` at its previous holder and return that version.

        Raises:
            ConfigError: ``alias`` does not exist, or has no earlier holder.
        """
        earlier = self.history.get(alias, [])
        if alias not in self.aliases and not earlier:
            named = ", ".join(sorted(self.aliases)) or "(none)"
            raise ConfigError(f"model {name!r} has no alias {alias!r}; aliases: {named}")
        if not earlier:
            raise ConfigError(f"alias {name}@{alias} has no earlier version to roll back to")
        self.aliases[alias] = earlier.pop()
        return self.aliases[alias]


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    raise NotImplementedError(f"cannot store {type(obj).__name__} in meta.json")


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)


def encode_version(mv: ModelVersion) -> bytes:
    """``meta.json``'s bytes: every field but ``path``."""
    return _encoder.encode({k: v for k, v in msgspec.structs.asdict(mv).items() if k != "path"})


def decode_version(data: bytes, path: str) -> ModelVersion:
    """Decode ``meta.json``'s bytes; ``path`` is where the version lives."""
    return msgspec.structs.replace(msgspec.json.decode(data, type=ModelVersion), path=path)


def read_version(meta: Path) -> ModelVersion:
    """Decode ``meta.json`` and attach its directory as ``path``."""
    return decode_version(meta.read_bytes(), str(meta.parent))


def write_version(mv: ModelVersion) -> None:
    """Write ``meta.json`` into ``mv.path`` (the last step of registering)."""
    atomic_write_bytes(Path(mv.path) / "meta.json", encode_version(mv))


def encode_aliases(state: AliasState) -> bytes:
    """``aliases.json``'s bytes."""
    return msgspec.json.encode(state)


def decode_aliases(data: bytes | None) -> AliasState:
    """Decode ``aliases.json``'s bytes; ``None`` (no file) means no aliases."""
    return AliasState() if data is None else msgspec.json.decode(data, type=AliasState)


def read_aliases(path: Path) -> AliasState:
    """Decode ``aliases.json``; a missing file means no aliases."""
    return decode_aliases(path.read_bytes() if path.is_file() else None)


def write_aliases(path: Path, state: AliasState) -> None:
    """Replace ``aliases.json`` atomically."""
    atomic_write_bytes(path, encode_aliases(state))


def check_name(text: str, what: str = "model name") -> None:
    """Raise ConfigError unless ``text`` is a safe name (also a safe directory name)."""
    if not _NAME.match(text):
        raise ConfigError(f"{what} {text!r}: use letters, digits, '_', '.', '-'")


def check_alias(alias: str) -> None:
    """Raise ConfigError unless ``alias`` is a name that cannot be read as a version."""
    check_name(alias, "alias")
    if alias.isdigit() or alias == "latest":
        raise ConfigError(f"alias {alias!r} would hide a version selector; choose a word")


def is_name(text: str) -> bool:
    """Whether ``text`` is a valid model name."""
    return bool(_NAME.match(text))


def inspect_source(
    name: str,
    source: Any,
    *,
    flavour: str | None,
    features: tuple[str, ...] | list[str] | None,
    trust: bool,
) -> tuple[str, str, Signature | None]:
    """Check that a source can be registered and read its signature where it is safe to.

    Files are loaded once (which also catches corrupt ones), except pickles
    without ``trust`` and flavours whose optional runtime is not installed.

    Returns:
        ``(flavour, file suffix, signature or None)``.

    Raises:
        ConfigError: Unknown flavour or a source that is neither a file nor an estimator.
        ModelLoadError: The model cannot be loaded.
    """
    probe: Model | None = None
    if isinstance(source, str | os.PathLike):
        flavour = flavour or flavour_of(source)
        suffix = Path(source).suffix.lower()
        if flavour in FLAVOURS and (suffix not in PICKLE_SUFFIXES or trust):
            probe = build_model(
                source, name=name, version="0", trust=trust, features=features, flavour=flavour
            )
    elif hasattr(source, "predict"):
        flavour, suffix = flavour or "sklearn", ".skops"
        probe = SklearnModel.from_estimator(source, name=name, version="0", features=features)
    else:
        raise ConfigError(
            f"cannot register {type(source).__name__}: pass a model file or a fitted estimator"
        )
    if flavour not in FLAVOURS:
        raise ConfigError(f"unknown model flavour {flavour!r}; expected one of {FLAVOURS}")
    if probe is None:
        return flavour, suffix, None
    try:
        probe.load()
    except ImportError:
        return flavour, suffix, None  # the runtime is optional here; loading will say so
    return flavour, suffix, probe.signature


def simple_params(estimator: Any) -> dict[str, Any]:
    """An estimator's JSON-friendly constructor parameters."""
    params = estimator.get_params(deep=False) if hasattr(estimator, "get_params") else {}
    return {k: v for k, v in params.items() if isinstance(v, str | int | float | bool | None)}


def dump_skops(estimator: Any, target: Path) -> None:
    """Save ``estimator`` with skops to ``target`` via a temporary name."""
    import skops.io as sio

    tmp = target.with_name(f".{target.name}.tmp")
    sio.dump(estimator, tmp)
    os.replace(tmp, target)
