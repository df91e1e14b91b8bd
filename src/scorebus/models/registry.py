"""A local model registry on disk: versions, aliases, promotion and rollback.

Layout (safe for several processes reading while one writes)::

    ROOT/NAME/VERSION/model.<ext>   the model file (copied in or saved with skops)
    ROOT/NAME/VERSION/meta.json     ModelVersion, written last: no meta, no version
    ROOT/NAME/aliases.json          {"aliases": {...}, "history": {...}}
    ROOT/.locks/model-NAME.lock     serialises writers of NAME

Versions are integers assigned by the registry. A reference is ``NAME``
(alias ``champion`` if set, else the latest version), ``NAME@3``,
``NAME@latest`` or ``NAME@ALIAS``.

Example::

    registry = Registry()
    mv = registry.register("fraud", estimator, metrics={"auc": 0.93})
    registry.promote("fraud", mv.version)
    model = registry.load("fraud@champion")
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ._fs import atomic_copy, file_lock
from .base import Model, ModelRef
from .loader import build_model
from .version import (
    ModelVersion,
    check_alias,
    check_name,
    dump_skops,
    inspect_source,
    is_name,
    read_aliases,
    read_version,
    simple_params,
    write_aliases,
    write_version,
)

DEFAULT_ROOT = ".scorebus/models"
DEFAULT_ALIAS = "champion"

__all__ = ["DEFAULT_ALIAS", "DEFAULT_ROOT", "ModelVersion", "Registry"]


class Registry:
    """Versions and aliases of models under one directory.

    Args:
        root: Registry directory; created on the first write.
    """

    def __init__(self, root: str | os.PathLike[str] = DEFAULT_ROOT) -> None:
        self.root = Path(root).expanduser().absolute()

    def names(self) -> list[str]:
        """Names that have at least one version, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if is_name(p.name) and self.versions(p.name)
        )

    def versions(self, name: str) -> list[str]:
        """Complete versions of ``name``, oldest first (empty if unknown)."""
        base = self.root / name
        if not is_name(name) or not base.is_dir():
            return []
        found = [p.name for p in base.iterdir() if (p / "meta.json").is_file()]
        return sorted((v for v in found if v.isdigit()), key=int)

    def aliases(self, name: str) -> dict[str, str]:
        """Alias -> version for ``name``."""
        return dict(read_aliases(self._aliases_file(name)).aliases)

    def get(self, name: str, version: str | int) -> ModelVersion:
        """One version's metadata.

        Raises:
            ConfigError: Unknown name or version (the message lists what exists).
        """
        self._require_name(name)
        meta = self.root / name / str(version) / "meta.json"
        if not str(version).isdigit() or not meta.is_file():
            known = ", ".join(self.versions(name))
            raise ConfigError(f"model {name!r} has no version {version!r}; versions: {known}")
        return read_version(meta)

    def resolve(self, ref: str | ModelRef) -> ModelVersion:
        """The version a reference points at.

        Args:
            ref: ``NAME``, ``NAME@VERSION``, ``NAME@latest`` or ``NAME@ALIAS``.
                Without a selector: alias ``champion`` if set, else the latest.

        Returns:
            The resolved version.

        Raises:
            ConfigError: Malformed reference, or unknown name, version or alias.
        """
        ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
        self._require_name(ref.name)
        selector = ref.selector
        aliases = self.aliases(ref.name)
        if selector is None:
            selector = DEFAULT_ALIAS if DEFAULT_ALIAS in aliases else "latest"
        if selector == "latest":
            return self.get(ref.name, self.versions(ref.name)[-1])
        if selector.isdigit():
            return self.get(ref.name, selector)
        if selector not in aliases:
            named = ", ".join(sorted(aliases)) or "(none)"
            numbered = ", ".join(self.versions(ref.name))
            raise ConfigError(
                f"model {ref.name!r} has no alias {selector!r}; "
                f"aliases: {named}; versions: {numbered}"
            )
        return self.get(ref.name, aliases[selector])

    def load(self, ref: str | ModelRef, *, trust: bool = False) -> Model:
        """Resolve ``ref`` and return the loaded model.

        Args:
            ref: As for ``resolve``.
            trust: Allow pickle/joblib files. Only for files you trust.

        Returns:
            A loaded model whose name and version are the registry's.

        Raises:
            ConfigError: Unknown reference.
            ModelLoadError: The file cannot or must not be loaded.
        """
        mv = self.resolve(ref)
        model = build_model(
            mv.file_path,
            name=mv.name,
            version=mv.version,
            trust=trust,
            features=mv.features or None,
            flavour=mv.flavour,
        )
        model.load()
        return model

    def register(
        self,
        name: str,
        source: Any,
        *,
        flavour: str | None = None,
        features: tuple[str, ...] | list[str] | None = None,
        metrics: Mapping[str, float] | None = None,
        params: Mapping[str, Any] | None = None,
        training_data: str | Mapping[str, Any] | None = None,
        alias: str | None = None,
        trust: bool = False,
    ) -> ModelVersion:
        """Store a new version of ``name`` and return it.

        Args:
            name: Model name (letters, digits, ``_ . -``).
            source: A model file (``.skops``, ``.onnx``, ``.pkl``, ``.joblib``:
                copied in) or a fitted scikit-learn estimator (saved with skops).
            flavour: Override the flavour chosen from the extension.
            features: Input column names; default from the estimator.
            metrics: Evaluation figures, e.g. ``{"auc": 0.93}``.
            params: Training parameters; default an estimator's simple params.
            training_data: Where the training data came from.
            alias: Point this alias at the new version.
            trust: Load a pickle/joblib file to check it and read its signature.

        Returns:
            The new version.

        Raises:
            ConfigError: Bad name or alias, or a source that is neither.
            ModelLoadError: The model cannot be loaded to check it.
        """
        check_name(name)
        if alias is not None:
            check_alias(alias)
        flavour, suffix, signature = inspect_source(
            name, source, flavour=flavour, features=features, trust=trust
        )
        is_file = isinstance(source, str | os.PathLike)
        if params is None and not is_file:
            params = simple_params(source)
        with self._lock(name):
            version = str(max((int(v) for v in self._version_dirs(name)), default=0) + 1)
            vdir = self.root / name / version
            vdir.mkdir(parents=True)
            target = vdir / f"model{suffix}"
            try:
                if is_file:
                    atomic_copy(Path(source), target)
                else:
                    dump_skops(source, target)
            except BaseException:
                shutil.rmtree(vdir, ignore_errors=True)
                raise
            mv = ModelVersion(
                name=name,
                version=version,
                flavour=flavour,
                file=target.name,
                features=signature.inputs if signature else tuple(features or ()),
                outputs=signature.outputs if signature else ("score",),
                metrics={k: float(v) for k, v in (metrics or {}).items()},
                params=dict(params or {}),
                training_data=dict(training_data)
                if isinstance(training_data, Mapping)
                else training_data,
                created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                path=str(vdir),
            )
            write_version(mv)
            if alias is not None:
                self._move_alias(name, alias, version)
        return mv

    def set_alias(self, name: str, alias: str, version: str | int) -> ModelVersion:
        """Point ``alias`` at ``version``, remembering the previous holder.

        Returns:
            The version the alias now points at.

        Raises:
            ConfigError: Bad alias, or unknown name or version.
        """
        check_alias(alias)
        mv = self.get(name, version)
        with self._lock(name):
            self._move_alias(name, alias, mv.version)
        return mv

    def promote(self, name: str, version: str | int, alias: str = DEFAULT_ALIAS) -> ModelVersion:
        """Make ``version`` the holder of ``alias`` (default ``champion``); see ``rollback``."""
        return self.set_alias(name, alias, version)

    def rollback(self, name: str, alias: str = DEFAULT_ALIAS) -> ModelVersion:
        """Point ``alias`` back at the version it held before the last change.

        Returns:
            The version the alias now points at.

        Raises:
            ConfigError: Unknown name, or no earlier holder to go back to.
        """
        self._require_name(name)
        with self._lock(name):
            state = read_aliases(self._aliases_file(name))
            earlier = state.history.get(alias, [])
            if not earlier:
                raise ConfigError(f"alias {name}@{alias} has no earlier version to roll back to")
            state.aliases[alias] = earlier.pop()
            write_aliases(self._aliases_file(name), state)
        return self.get(name, state.aliases[alias])

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold an inter-process lock named ``key`` (not re-entrant; not a model name)."""
        check_name(key, "lock name")
        with file_lock(self.root / ".locks" / f"{key}.lock"):
            yield

    def _lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        return self.lock(f"model-{name}")

    def _move_alias(self, name: str, alias: str, version: str) -> None:
        state = read_aliases(self._aliases_file(name))
        current = state.aliases.get(alias)
        if current == version:
            return
        if current is not None:
            state.history.setdefault(alias, []).append(current)
        state.aliases[alias] = version
        write_aliases(self._aliases_file(name), state)

    def _aliases_file(self, name: str) -> Path:
        return self.root / name / "aliases.json"

    def _version_dirs(self, name: str) -> list[str]:
        # Incomplete versions (a crash before meta.json) still reserve their number.
        base = self.root / name
        return [p.name for p in base.iterdir() if p.name.isdigit()] if base.is_dir() else []

    def _require_name(self, name: str) -> None:
        if not is_name(name) or not self.versions(name):
            known = ", ".join(self.names()) or f"none (registry {self.root} is empty)"
            raise ConfigError(f"unknown model {name!r}; registered models: {known}")
