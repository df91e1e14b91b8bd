"""What every model registry does, whatever stores it: the contract and its shared logic.

``ModelRegistry`` holds the behaviour (references, aliases, promotion,
rollback, registering a source, loading); a backend supplies a handful of
storage steps: list, read a version's metadata, store a new version, read-
modify-write ``aliases.json`` atomically, fetch a version's files to this
machine, and an inter-process lock. ``Registry`` (a folder) and
``GcsRegistry`` (``gs://BUCKET/PREFIX``) are the two backends;
``open_registry`` picks one from a location.

Example, code that does not care where the registry lives::

    def champion_of(registry: ModelRegistry, name: str) -> str:
        return registry.resolve(f"{name}@champion").ref
"""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ConfigError
from ._fs import atomic_copy
from .base import Model, ModelRef
from .loader import build_model
from .version import (
    AliasState,
    ModelVersion,
    check_alias,
    check_name,
    dump_skops,
    inspect_source,
    is_name,
    simple_params,
)

DEFAULT_ALIAS = "champion"

T = TypeVar("T")
#: Writes the model file to the path it is given.
WriteModel = Callable[[Path], None]
#: Builds the metadata of a version from its number and location.
Describe = Callable[[str, str], ModelVersion]


class ModelRegistry(abc.ABC):
    """Versions and aliases of models; see the module docstring for the backends.

    A reference is ``NAME`` (alias ``champion`` if set, else the latest
    version), ``NAME@3``, ``NAME@latest`` or ``NAME@ALIAS``. Versions are
    integers handed out by the registry and never change once written.
    """

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the registry lives (a folder or a ``gs://`` URL), for messages."""

    @abc.abstractmethod
    def names(self) -> list[str]:
        """Names that have at least one version, sorted."""

    @abc.abstractmethod
    def versions(self, name: str) -> list[str]:
        """Complete versions of ``name``, oldest first (empty if unknown)."""

    @abc.abstractmethod
    def lock(self, key: str) -> contextlib.AbstractContextManager[None]:
        """Hold an inter-process lock named ``key`` (not re-entrant; not a model name)."""

    @abc.abstractmethod
    def _read_version(self, name: str, version: str) -> ModelVersion | None:
        """One version's metadata, or ``None`` if it has no ``meta.json``."""

    @abc.abstractmethod
    def _read_aliases(self, name: str) -> AliasState:
        """``aliases.json`` of ``name`` (empty if there is none)."""

    @abc.abstractmethod
    def _update_aliases(self, name: str, change: Callable[[AliasState], T]) -> T:
        """Apply ``change`` to ``aliases.json`` atomically; it raises to write nothing."""

    @abc.abstractmethod
    def _store(self, name: str, file: str, write: WriteModel, describe: Describe) -> ModelVersion:
        """Store the next version of ``name``: its model ``file``, then ``meta.json``."""

    @abc.abstractmethod
    def _local(self, mv: ModelVersion) -> ModelVersion:
        """``mv`` with ``path`` a local directory that holds its files."""

    def aliases(self, name: str) -> dict[str, str]:
        """Alias -> version for ``name``."""
        return dict(self._read_aliases(name).aliases)

    def alias_state(self, name: str) -> AliasState:
        """Aliases of ``name`` and, per alias, its earlier holders (most recent last)."""
        return self._read_aliases(name)

    def get(self, name: str, version: str | int) -> ModelVersion:
        """One version's metadata.

        Raises:
            ConfigError: Unknown name or version (the message lists what exists).
        """
        version = str(version)
        mv = self._read_version(name, version) if is_name(name) and version.isdigit() else None
        if mv is None:
            self._require_name(name)
            known = ", ".join(self.versions(name))
            raise ConfigError(f"model {name!r} has no version {version!r}; versions: {known}")
        return mv

    def resolve(self, ref: str | ModelRef) -> ModelVersion:
        """The version a reference points at.

        Args:
            ref: ``NAME``, ``NAME@VERSION``, ``NAME@latest`` or ``NAME@ALIAS``.
                Without a selector: alias ``champion`` if set, else the latest.

        Returns:
            The resolved version (its ``path`` may be remote: see ``fetch``).

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

    def fetch(self, ref: str | ModelRef | ModelVersion) -> ModelVersion:
        """The version with ``path`` a local directory holding its files.

        A local registry's versions are already local; a remote registry
        downloads the version once into its cache (versions never change).

        Raises:
            ConfigError: Unknown reference.
        """
        return self._local(ref if isinstance(ref, ModelVersion) else self.resolve(ref))

    def load(self, ref: str | ModelRef, *, trust: bool = False) -> Model:
        """Resolve ``ref``, fetch its files and return the loaded model.

        Args:
            ref: As for ``resolve``.
            trust: Allow pickle/joblib files. Only for files you trust.

        Returns:
            A loaded model whose name and version are the registry's.

        Raises:
            ConfigError: Unknown reference.
            ModelLoadError: The file cannot or must not be loaded.
        """
        mv = self.fetch(ref)
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

        def write(target: Path) -> None:
            if is_file:
                atomic_copy(Path(source), target)
            else:
                dump_skops(source, target)

        def describe(version: str, path: str) -> ModelVersion:
            return ModelVersion(
                name=name,
                version=version,
                flavour=flavour,
                file=f"model{suffix}",
                features=signature.inputs if signature else tuple(features or ()),
                outputs=signature.outputs if signature else ("score",),
                metrics={k: float(v) for k, v in (metrics or {}).items()},
                params=dict(params or {}),
                training_data=dict(training_data)
                if isinstance(training_data, Mapping)
                else training_data,
                created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                path=path,
            )

        mv = self._store(name, f"model{suffix}", write, describe)
        if alias is not None:
            self._update_aliases(name, lambda state: state.move(alias, mv.version))
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
        self._update_aliases(name, lambda state: state.move(alias, mv.version))
        return mv

    def promote(self, name: str, version: str | int, alias: str = DEFAULT_ALIAS) -> ModelVersion:
        """Make ``version`` the holder of ``alias`` (default ``champion``); see ``rollback``."""
        return self.set_alias(name, alias, version)

    def rollback(self, name: str, alias: str = DEFAULT_ALIAS) -> ModelVersion:
        """Point ``alias`` back at the version it held before the last change.

        Returns:
            The version the alias now points at.

        Raises:
            ConfigError: Unknown name or alias, or no earlier holder to go back to.
        """
        self._require_name(name)
        version = self._update_aliases(name, lambda state: state.step_back(name, alias))
        return self.get(name, version)

    def _require_name(self, name: str) -> None:
        if not is_name(name) or not self.versions(name):
            known = ", ".join(self.names()) or f"none (registry {self.location} is empty)"
            raise ConfigError(f"unknown model {name!r}; registered models: {known}")
