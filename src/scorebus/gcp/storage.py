"""Cloud Storage: which file a "finalized" event names, and ``gs://`` files for batch jobs.

A new object is announced in one of two shapes, both decoded to a :class:`FileRef`:

- a **Pub/Sub notification** (``gcloud storage buckets notifications create gs://B
  --topic=T --event-types=OBJECT_FINALIZE --payload-format=json``): attributes
  ``eventType``, ``bucketId``, ``objectId``, ``objectGeneration``,
  ``payloadFormat`` (``JSON_API_V1`` or ``NONE``), data the object resource;
- an **Eventarc CloudEvent** of type ``google.cloud.storage.object.v1.finalized``
  whose data is the object resource (``bucket``, ``name``, ``size``,
  ``contentType``, ``generation``; the JSON API writes int64 as strings).

scorebus's Pub/Sub broker makes a notification a ``...messagePublished`` event with
lower-cased attributes as extensions (``eventtype``, ``bucketid``, ...): :func:`from_event`
reads it, the push endpoint's shape (object resource only: taken as a finalize) and an
Eventarc event. :class:`GcsStorage` serves ``gs://`` files (``pip install 'scorebus[gcs]'``).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

import msgspec

from ..errors import ConfigError, DecodeError, TransientError
from ..events import Event
from ..runtime.files import CONTENT_TYPE_OF, EXTENSIONS

FINALIZED = "google.cloud.storage.object.v1.finalized"
OBJECT_FINALIZE = "OBJECT_FINALIZE"
_STORAGE_TYPES = "google.cloud.storage.object.v1."


class FileRef(msgspec.Struct, frozen=True, kw_only=True):
    """A landed object: ``gs://BUCKET/NAME`` and what the event said about it."""

    uri: str
    size: int | None = None
    content_type: str | None = None
    generation: int | None = None


class _Object(msgspec.Struct, kw_only=True):
    bucket: str | None = None
    name: str | None = None
    size: int | str | None = None
    contentType: str | None = None
    generation: int | str | None = None


def split_uri(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/b.csv`` -> ``("bucket", "a/b.csv")``.

    Raises:
        ConfigError: not a ``gs://BUCKET/OBJECT`` URI.
    """
    scheme, _, rest = uri.partition("://")
    bucket, _, name = rest.partition("/")
    if scheme != "gs" or not bucket or not name:
        raise ConfigError(f"{uri!r}: expected gs://BUCKET/OBJECT")
    return bucket, name


def from_notification(attributes: Mapping[str, str], data: Any) -> FileRef | None:
    """The object of a Cloud Storage Pub/Sub notification; ``None`` if not a finalize.

    Args:
        attributes: the message attributes (any letter case).
        data: the message data: the object resource as bytes, str or dict, or
            empty with ``payloadFormat=NONE``.

    Raises:
        DecodeError: neither the attributes nor the data name a bucket and object.
    """
    attrs = {k.lower(): v for k, v in attributes.items()}
    kind = attrs.get("eventtype")
    if kind is not None and kind != OBJECT_FINALIZE:
        return None
    obj = _object(data) if data else _Object()
    bucket = attrs.get("bucketid") or obj.bucket
    name = attrs.get("objectid") or obj.name
    if not bucket or not name:
        raise DecodeError("not a Cloud Storage notification: no bucketId/objectId nor object data")
    return FileRef(
        uri=f"gs://{bucket}/{name}",
        size=_int(obj.size, "size"),
        content_type=obj.contentType,
        generation=_int(attrs.get("objectgeneration") or obj.generation, "generation"),
    )


def from_cloud_event(type: str, data: Any) -> FileRef | None:
    """The object of an Eventarc Cloud Storage CloudEvent; ``None`` unless ``finalized``.

    Raises:
        DecodeError: not a Cloud Storage event, or data without ``bucket`` and ``name``.
    """
    if type != FINALIZED:
        if type.startswith(_STORAGE_TYPES):
            return None  # deleted, archived, metadataUpdated
        raise DecodeError(f"event type {type!r} is not a Cloud Storage object event")
    obj = _object(data)
    if not obj.bucket or not obj.name:
        raise DecodeError("Cloud Storage event data has no 'bucket' and 'name'")
    return FileRef(
        uri=f"gs://{obj.bucket}/{obj.name}",
        size=_int(obj.size, "size"),
        content_type=obj.contentType,
        generation=_int(obj.generation, "generation"),
    )


def from_event(event: Event) -> FileRef | None:
    """The object a scorebus event announces (either shape); ``None`` if not a finalize."""
    if event.type.startswith(_STORAGE_TYPES):
        return from_cloud_event(event.type, event.data)
    return from_notification(event.extensions, event.data)


def _object(data: Any) -> _Object:
    try:
        if isinstance(data, bytes | bytearray | memoryview | str):
            return msgspec.json.decode(
                bytes(data) if not isinstance(data, str) else data, type=_Object
            )
        return msgspec.convert(data, _Object)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DecodeError(f"not a Cloud Storage object resource: {exc}") from exc


def _int(value: int | str | None, field: str) -> int | None:
    try:
        return None if value is None or value == "" else int(value)
    except ValueError as exc:
        raise DecodeError(f"object {field} {value!r} is not an integer") from exc


class GcsStorage:
    """``gs://BUCKET/OBJECT`` files through google-cloud-storage.

    Reads stream in ranged downloads of ``chunk_size`` bytes, pinned to the
    generation current when the file was opened; a write is uploaded when its
    file is closed without an exception, and the object is replaced whole.

    Args:
        client: a ready ``google.cloud.storage.Client``; else one is built on first use.
        project: the client's project (Application Default Credentials' otherwise).
        endpoint: an emulator's URL, e.g. fake-gcs-server's ``http://127.0.0.1:4443``;
            anonymous credentials are used with it.
        client_options: more client options (``ClientOptions`` or a dict).
        chunk_size: bytes per ranged download.
    """

    def __init__(
        self,
        *,
        client: Any = None,
        project: str | None = None,
        endpoint: str | None = None,
        client_options: Any = None,
        chunk_size: int = 8 << 20,
    ) -> None:
        self._client, self.project, self.endpoint = client, project, endpoint
        self.client_options, self.chunk_size = client_options, chunk_size
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._build()
            return self._client

    def _build(self) -> Any:
        try:
            import google.cloud.storage as storage
            from google.api_core.client_options import ClientOptions, from_dict
            from google.auth.credentials import AnonymousCredentials
            from google.auth.exceptions import DefaultCredentialsError
        except ImportError as exc:
            raise ImportError("gs:// files need pip install 'scorebus[gcs]'") from exc
        opts = self.client_options
        opts = from_dict(opts) if isinstance(opts, dict) else opts or ClientOptions()
        if self.endpoint is None:
            try:
                return storage.Client(project=self.project, client_options=opts)
            except DefaultCredentialsError as exc:
                raise ConfigError(f"Cloud Storage: no credentials: {exc}") from exc
        opts.api_endpoint = self.endpoint
        return storage.Client(
            project=self.project or "scorebus-local",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=opts,
        )

    def _blob(self, uri: str) -> Any:
        bucket, name = split_uri(uri)
        return self.client.bucket(bucket).blob(name)

    def open_read(self, uri: str) -> BinaryIO:
        blob = self._blob(uri)
        with translated(uri):
            blob.reload()
        reader = blob.open("rb", chunk_size=self.chunk_size, if_generation_match=blob.generation)
        return io.BufferedReader(_Download(reader, uri), buffer_size=1 << 16)

    def open_write(self, uri: str) -> BinaryIO:
        ext = os.path.splitext(uri)[1].lower()
        fmt = EXTENSIONS.get(ext)
        return _Upload(self._blob(uri), uri, CONTENT_TYPE_OF[fmt] if fmt else None)

    def exists(self, uri: str) -> bool:
        with translated(uri):
            return bool(self._blob(uri).exists())


@contextlib.contextmanager
def translated(uri: str) -> Iterator[None]:
    """Cloud Storage SDK errors as ``FileNotFoundError``, ``PermissionError`` or ``TransientError``."""
    import requests
    from google.api_core import exceptions as gexc
    from google.auth.exceptions import TransportError

    try:
        yield
    except gexc.NotFound as exc:
        raise FileNotFoundError(f"{uri}: no such object or bucket") from exc
    except gexc.PreconditionFailed as exc:
        raise FileNotFoundError(f"{uri}: replaced by a newer generation while reading") from exc
    except (gexc.Forbidden, gexc.Unauthorized) as exc:
        raise PermissionError(f"{uri}: {exc.message}") from exc
    except (
        gexc.TooManyRequests,
        gexc.ServerError,
        requests.RequestException,
        TransportError,
    ) as exc:
        raise TransientError(f"{uri}: Cloud Storage unavailable: {exc}") from exc


class _Download(io.RawIOBase):
    """A ``BlobReader`` as a raw stream, its SDK errors translated."""

    def __init__(self, reader: Any, uri: str) -> None:
        self._reader, self._uri = reader, uri

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        with translated(self._uri):
            data = self._reader.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        with translated(self._uri):
            return int(self._reader.seek(offset, whence))

    def tell(self) -> int:
        return int(self._reader.tell())

    def close(self) -> None:
        self._reader.close()  # BlobReader.close may be called twice
        super().close()


class _Upload(io.BufferedRandom):
    """A local temporary file, uploaded to the object (in one upload) on a clean close."""

    def __init__(self, blob: Any, uri: str, content_type: str | None) -> None:
        fd, self._path = tempfile.mkstemp(prefix="scorebus-upload-")
        super().__init__(io.FileIO(fd, "w+b"), buffer_size=1 << 20)
        self._blob, self._uri, self._type, self._keep = blob, uri, content_type, True

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self._keep:
                size = self.tell()
                self.seek(0)
                with translated(self._uri):
                    self._blob.upload_from_file(self, size=size, content_type=self._type)
        finally:
            super().close()
            os.unlink(self._path)

    def __exit__(self, *exc_info: object) -> None:
        self._keep = exc_info[0] is None  # an exception: leave the object as it was
        self.close()
