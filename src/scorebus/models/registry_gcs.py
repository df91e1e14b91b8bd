"""The model registry on Cloud Storage: ``gs://BUCKET/PREFIX``, shared by every machine.

Layout under the prefix, as on disk::

    PREFIX/NAME/VERSION/.reserved       claims the version number (created first)
    PREFIX/NAME/VERSION/model.<ext>     the model file
    PREFIX/NAME/VERSION/meta.json       ModelVersion, written last: no meta, no version
    PREFIX/NAME/aliases.json            {"aliases": {...}, "history": {...}}
    PREFIX/.locks/KEY.lock              held by ``lock(KEY)``

Concurrency without file locks, through object generations: a writer claims
the next version number by creating its ``.reserved`` object with
``if_generation_match=0`` (only one creation of a name succeeds; the loser
gets 412 and tries the next number), and rewrites ``aliases.json`` only if
its generation is still the one it read (else it reads again and retries).

Loading downloads the version's files once into a local cache,
``CACHE/BUCKET/PREFIX/NAME/VERSION/`` (``.scorebus/cache/registry`` by
default); versions never change, so a cached copy whose ``meta.json`` matches
is reused. ``pip install 'scorebus[gcs]'``.

The client honours ``STORAGE_EMULATOR_HOST`` itself (anonymous credentials);
``endpoint=`` names an emulator explicitly.
"""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from google.api_core import exceptions as gexc

from ..errors import ConfigError, TransientError
from ._fs import atomic_write_bytes
from ._gcs import build_client, object_lock, parse_root, storage_errors
from .registry_base import Describe, ModelRegistry, WriteModel
from .version import (
    AliasState,
    ModelVersion,
    check_name,
    decode_aliases,
    decode_version,
    encode_aliases,
    encode_version,
    is_name,
    read_version,
)

DEFAULT_CACHE = ".scorebus/cache/registry"
RESERVED = ".reserved"
JSON = "application/json"
_TRIES = 50

T = TypeVar("T")


class GcsRegistry(ModelRegistry):
    """Versions and aliases of models under ``gs://BUCKET/PREFIX``.

    Args:
        root: ``gs://BUCKET`` or ``gs://BUCKET/PREFIX``.
        client: A ready ``google.cloud.storage.Client``; else one is built on first use.
        project: The client's project.
        endpoint: An emulator's URL, e.g. ``http://127.0.0.1:4443`` (anonymous
            credentials); without it the client follows ``STORAGE_EMULATOR_HOST``.
        cache_dir: Where loaded versions are downloaded to.
        lock_timeout_s: How long ``lock`` waits before giving up.
        stale_lock_s: A lock object older than this is taken to be a crashed holder's.

    Raises:
        ConfigError: ``root`` is not ``gs://BUCKET[/PREFIX]``.
    """

    def __init__(
        self,
        root: str,
        *,
        client: Any = None,
        project: str | None = None,
        endpoint: str | None = None,
        cache_dir: str | os.PathLike[str] = DEFAULT_CACHE,
        lock_timeout_s: float = 600.0,
        stale_lock_s: float = 300.0,
    ) -> None:
        bucket, prefix = parse_root(root)
        self.bucket_name, self.prefix = bucket, f"{prefix}/" if prefix else ""
        self.root = f"gs://{bucket}/{prefix}".rstrip("/")
        self.project, self.endpoint = project, endpoint
        self.cache_dir = Path(cache_dir).expanduser().absolute()
        self.lock_timeout_s, self.stale_lock_s = lock_timeout_s, stale_lock_s
        self._client, self._guard = client, threading.Lock()
        self._metas: dict[tuple[str, str], ModelVersion] = {}

    @property
    def location(self) -> str:
        return self.root

    @property
    def client(self) -> Any:
        """The ``google.cloud.storage.Client``, built on first use."""
        with self._guard:
            if self._client is None:
                self._client = build_client(self.root, self.project, self.endpoint)
            return self._client

    def names(self) -> list[str]:
        return sorted(n for n, found in self._scan().items() if any(found.values()))

    def versions(self, name: str) -> list[str]:
        if not is_name(name):
            return []
        found = self._scan(name).get(name, {})
        return sorted((v for v, complete in found.items() if complete), key=int)

    def lock(self, key: str) -> contextlib.AbstractContextManager[None]:
        check_name(key, "lock name")
        return object_lock(
            self._bucket,
            f"{self.prefix}.locks/{key}.lock",
            errors=self._errors,
            timeout_s=self.lock_timeout_s,
            stale_s=self.stale_lock_s,
        )

    def _read_version(self, name: str, version: str) -> ModelVersion | None:
        if (name, version) not in self._metas:
            data, _ = self._read(self._object(name, version, "meta.json"))
            if data is None:
                return None
            self._metas[name, version] = decode_version(data, self._url(name, version))
        return self._metas[name, version]

    def _read_aliases(self, name: str) -> AliasState:
        return decode_aliases(self._read(self._object(name, "aliases.json"))[0])

    def _update_aliases(self, name: str, change: Callable[[AliasState], T]) -> T:
        blob_name, written = self._object(name, "aliases.json"), None
        for attempt in range(_TRIES):
            data, generation = self._read(blob_name)
            if written is not None and data == written[0]:
                return written[1]  # a retried upload that had landed the first time
            state = decode_aliases(data)
            before = encode_aliases(state)
            result = change(state)
            after = encode_aliases(state)
            if after == before:
                return result
            written = (after, result)
            try:
                with self._errors():
                    self._bucket.blob(blob_name).upload_from_string(
                        after, content_type=JSON, if_generation_match=generation
                    )
                return result
            except gexc.PreconditionFailed:
                time.sleep(random.uniform(0, 0.02 * 2 ** min(attempt, 6)))
        raise TransientError(f"{self._url(name)}/aliases.json kept changing; try again")

    def _store(self, name: str, file: str, write: WriteModel, describe: Describe) -> ModelVersion:
        with tempfile.TemporaryDirectory(prefix="scorebus-register-") as tmp:
            local = Path(tmp) / file
            write(local)  # before claiming a number: a failed save claims nothing
            version = self._reserve(name)
            mv = describe(version, self._url(name, version))
            try:
                # 412 here can only be an upload the client retried after it had
                # landed: nobody else writes into a version this writer claimed.
                with self._errors(), contextlib.suppress(gexc.PreconditionFailed):
                    self._bucket.blob(self._object(name, version, file)).upload_from_filename(
                        str(local), if_generation_match=0
                    )
                with self._errors(), contextlib.suppress(gexc.PreconditionFailed):
                    self._bucket.blob(self._object(name, version, "meta.json")).upload_from_string(
                        encode_version(mv), content_type=JSON, if_generation_match=0
                    )
            except BaseException:
                for leftover in (file, RESERVED):
                    with contextlib.suppress(Exception):
                        self._bucket.blob(self._object(name, version, leftover)).delete()
                raise
        self._metas[name, version] = mv
        return mv

    def _local(self, mv: ModelVersion) -> ModelVersion:
        key = quote("/" + self.prefix.rstrip("/"), safe="")
        folder = self.cache_dir / self.bucket_name / key / mv.name / mv.version
        meta, stored = folder / "meta.json", encode_version(mv)
        if meta.is_file() and meta.read_bytes() == stored and (folder / mv.file).is_file():
            return read_version(meta)
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{mv.file}.", suffix=".tmp")
        os.close(fd)
        try:
            with self._errors():
                blob = self._bucket.blob(self._object(mv.name, mv.version, mv.file))
                try:
                    blob.download_to_filename(tmp)
                except gexc.NotFound:
                    raise ConfigError(f"{mv.path}/{mv.file} is missing from the registry") from None
            os.replace(tmp, folder / mv.file)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        atomic_write_bytes(meta, stored)  # last: a cached copy is whole once it has meta.json
        return read_version(meta)

    @property
    def _bucket(self) -> Any:
        return self.client.bucket(self.bucket_name)

    def _object(self, name: str, *parts: str) -> str:
        return self.prefix + "/".join((name, *parts))

    def _url(self, name: str, *parts: str) -> str:
        return f"gs://{self.bucket_name}/{self._object(name, *parts)}"

    def _scan(self, name: str | None = None) -> dict[str, dict[str, bool]]:
        """Name -> version -> complete, for every claimed version (of ``name`` only, if given)."""
        found: dict[str, dict[str, bool]] = {}
        with self._errors():
            blobs = self.client.list_blobs(
                self.bucket_name, prefix=self.prefix + (f"{name}/" if name else "")
            )
            for blob in blobs:
                parts = blob.name[len(self.prefix) :].split("/")
                if len(parts) == 3 and is_name(parts[0]) and parts[1].isdigit():
                    versions = found.setdefault(parts[0], {})
                    versions[parts[1]] = versions.get(parts[1], False) or parts[2] == "meta.json"
        return found

    def _read(self, blob_name: str) -> tuple[bytes | None, int]:
        """An object's bytes and generation; ``(None, 0)`` if it does not exist."""
        blob = self._bucket.blob(blob_name)
        with self._errors():
            try:
                data: bytes = blob.download_as_bytes()
            except gexc.NotFound:
                return None, 0
        if blob.generation is None:  # the server did not say: ask, and read that generation
            with self._errors():
                blob.reload()
                data = self._bucket.blob(blob_name, generation=blob.generation).download_as_bytes()
        return data, int(blob.generation)

    def _reserve(self, name: str) -> str:
        """Claim the next free version number of ``name``."""
        version = max((int(v) for v in self._scan(name).get(name, {})), default=0) + 1
        for _ in range(_TRIES):
            try:
                with self._errors():
                    self._bucket.blob(
                        self._object(name, str(version), RESERVED)
                    ).upload_from_string(b"", if_generation_match=0)
                return str(version)
            except gexc.PreconditionFailed:
                version += 1  # another writer claimed it first
        raise TransientError(f"could not claim a version of {self._url(name)}; try again")

    def _errors(self) -> contextlib.AbstractContextManager[None]:
        return storage_errors(self.root, self.bucket_name)
