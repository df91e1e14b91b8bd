"""The model registry on disk (the default), and ``open_registry`` for any location.

Layout (safe for several processes reading while one writes)::

    ROOT/NAME/VERSION/model.<ext>   the model file (copied in or saved with skops)
    ROOT/NAME/VERSION/meta.json     ModelVersion, written last: no meta, no version
    ROOT/NAME/aliases.json          {"aliases": {...}, "history": {...}}
    ROOT/.locks/model-NAME.lock     serialises writers of NAME

A ``gs://BUCKET/PREFIX`` location opens the Cloud Storage registry instead
(``registry_gcs``), with the same layout under the prefix and the same
behaviour (``ModelRegistry`` in ``registry_base``).

Example::

    registry = open_registry(".scorebus/models")    # or "gs://my-bucket/models"
    mv = registry.register("fraud", estimator, metrics={"auc": 0.93})
    registry.promote("fraud", mv.version)
    model = registry.load("fraud@champion")
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from .._extras import load_backend
from ._fs import file_lock
from .registry_base import DEFAULT_ALIAS, Describe, ModelRegistry, WriteModel
from .version import (
    AliasState,
    ModelVersion,
    check_name,
    encode_aliases,
    is_name,
    read_aliases,
    read_version,
    write_aliases,
    write_version,
)

DEFAULT_ROOT = ".scorebus/models"
GCS_SCHEME = "gs://"

__all__ = [
    "DEFAULT_ALIAS",
    "DEFAULT_ROOT",
    "ModelRegistry",
    "ModelVersion",
    "Registry",
    "open_registry",
    "registry_location",
]

T = TypeVar("T")


class Registry(ModelRegistry):
    """Versions and aliases of models under one local directory.

    Args:
        root: Registry directory; created on the first write.
    """

    def __init__(self, root: str | os.PathLike[str] = DEFAULT_ROOT) -> None:
        self.root = Path(root).expanduser().absolute()

    @property
    def location(self) -> str:
        return str(self.root)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if is_name(p.name) and self.versions(p.name)
        )

    def versions(self, name: str) -> list[str]:
        base = self.root / name
        if not is_name(name) or not base.is_dir():
            return []
        found = [p.name for p in base.iterdir() if (p / "meta.json").is_file()]
        return sorted((v for v in found if v.isdigit()), key=int)

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        check_name(key, "lock name")
        with file_lock(self.root / ".locks" / f"{key}.lock"):
            yield

    def _read_version(self, name: str, version: str) -> ModelVersion | None:
        meta = self.root / name / version / "meta.json"
        return read_version(meta) if meta.is_file() else None

    def _read_aliases(self, name: str) -> AliasState:
        return read_aliases(self._aliases_file(name))

    def _update_aliases(self, name: str, change: Callable[[AliasState], T]) -> T:
        with self.lock(f"model-{name}"):
            state = read_aliases(self._aliases_file(name))
            before = encode_aliases(state)
            result = change(state)
            if encode_aliases(state) != before:
                write_aliases(self._aliases_file(name), state)
        return result

    def _store(self, name: str, file: str, write: WriteModel, describe: Describe) -> ModelVersion:
        with self.lock(f"model-{name}"):
            version = str(max((int(v) for v in self._version_dirs(name)), default=0) + 1)
            vdir = self.root / name / version
            vdir.mkdir(parents=True)
            try:
                write(vdir / file)
                mv = describe(version, str(vdir))
                write_version(mv)
            except BaseException:
                shutil.rmtree(vdir, ignore_errors=True)
                raise
        return mv

    def _local(self, mv: ModelVersion) -> ModelVersion:
        return mv

    def _aliases_file(self, name: str) -> Path:
        return self.root / name / "aliases.json"

    def _version_dirs(self, name: str) -> list[str]:
        # Incomplete versions (a crash before meta.json) still reserve their number.
        base = self.root / name
        return [p.name for p in base.iterdir() if p.name.isdigit()] if base.is_dir() else []


def registry_location(root: str | os.PathLike[str]) -> str | Path:
    """A registry location as settings keep it: a ``gs://`` URL as is, else a path.

    ``Path("gs://b/p")`` would fold the ``//``, so URLs stay strings.
    """
    text = os.fspath(root)
    return text if text.startswith(GCS_SCHEME) else Path(text)


def open_registry(root: str | os.PathLike[str] = DEFAULT_ROOT, **options: Any) -> ModelRegistry:
    """The registry at ``root``: Cloud Storage for ``gs://BUCKET[/PREFIX]``, else a folder.

    Args:
        root: A folder, or ``gs://BUCKET[/PREFIX]``.
        **options: Keyword arguments of ``GcsRegistry`` (``client``, ``project``,
            ``endpoint``, ``cache_dir``...); none apply to a folder.

    Returns:
        A ``ModelRegistry``.

    Raises:
        ConfigError: A malformed ``gs://`` URL, or options given for a folder.
        ImportError: ``gs://`` without google-cloud-storage (names the extra).
    """
    location = registry_location(root)
    if isinstance(location, str):
        cls = load_backend("scorebus.models", "registry_gcs", "GcsRegistry", "gcs")
        registry: ModelRegistry = cls(location, **options)
        return registry
    if options:
        from ..errors import ConfigError

        raise ConfigError(
            f"registry {str(location)!r} is a folder: options {sorted(options)} "
            "apply only to gs://BUCKET/PREFIX"
        )
    return Registry(location)
