"""Cloud Storage plumbing of the ``gs://`` registry: the URL, the client, errors, locks.

Only ``registry_gcs`` imports this module (through ``open_registry``, so a
missing google-cloud-storage names the ``gcs`` extra).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import google.cloud.storage as storage
from google.api_core import exceptions as gexc

from ..errors import ConfigError, ModelUnavailable, TransientError

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


def parse_root(root: str) -> tuple[str, str]:
    """``gs://bucket/a//b/`` -> ``("bucket", "a/b")``.

    Raises:
        ConfigError: Not ``gs://BUCKET[/PREFIX]`` with a valid bucket name.
    """
    scheme, _, rest = root.partition("://")
    bucket, _, prefix = rest.partition("/")
    parts = [p for p in prefix.split("/") if p]
    if scheme != "gs" or not _BUCKET.match(bucket) or ".." in parts:
        raise ConfigError(f"registry {root!r}: expected gs://BUCKET or gs://BUCKET/PREFIX")
    return bucket, "/".join(parts)


def build_client(root: str, project: str | None, endpoint: str | None) -> Any:
    """A ``storage.Client``: anonymous against ``endpoint``, else the library's defaults.

    Without ``endpoint`` the library itself follows ``STORAGE_EMULATOR_HOST``
    (anonymous credentials) or uses Application Default Credentials.

    Raises:
        ConfigError: No credentials.
    """
    from google.auth.credentials import AnonymousCredentials
    from google.auth.exceptions import DefaultCredentialsError

    if endpoint is not None:
        return storage.Client(
            project=project or "scorebus-local",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": endpoint},
        )
    try:
        return storage.Client(project=project) if project else storage.Client()
    except DefaultCredentialsError as exc:
        raise ConfigError(
            f"registry {root}: no Google Cloud credentials (gcloud auth "
            f"application-default login; or STORAGE_EMULATOR_HOST for an emulator): {exc}"
        ) from exc


@contextlib.contextmanager
def storage_errors(root: str, bucket: str) -> Iterator[None]:
    """Translate the SDK's errors at the edge; 412 passes through (callers retry on it).

    Raises:
        ConfigError: 404 (where an object's absence is handled first: the bucket), 401, 403.
        ModelUnavailable: Anything else that may heal: 5xx, 429, the network.
    """
    try:
        yield
    except gexc.PreconditionFailed:
        raise
    except gexc.NotFound as exc:
        raise ConfigError(f"registry {root}: bucket {bucket!r} not found ({exc.message})") from exc
    except (gexc.Forbidden, gexc.Unauthorized) as exc:
        raise ConfigError(f"registry {root}: access denied ({exc.message})") from exc
    except (gexc.GoogleAPIError, OSError) as exc:
        raise ModelUnavailable(f"registry {root}: Cloud Storage failed: {exc}") from exc


@contextlib.contextmanager
def object_lock(
    bucket: Any,
    blob_name: str,
    *,
    errors: Callable[[], contextlib.AbstractContextManager[None]],
    timeout_s: float,
    stale_s: float,
) -> Iterator[None]:
    """Hold the lock that the object ``blob_name`` is while it exists.

    Acquired by creating the object with ``if_generation_match=0``; released
    by deleting that generation. A lock older than ``stale_s`` is taken to be
    a crashed holder's and deleted.

    Raises:
        TransientError: Still held by another after ``timeout_s``.
    """
    token = uuid.uuid4().hex
    give_up, delay = time.monotonic() + timeout_s, 0.05
    while (generation := _try_lock(bucket, blob_name, token, errors, stale_s)) is None:
        if time.monotonic() > give_up:
            raise TransientError(
                f"lock gs://{bucket.name}/{blob_name} still held after {timeout_s} s"
            )
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
    try:
        yield
    finally:
        with contextlib.suppress(gexc.NotFound, gexc.PreconditionFailed):
            bucket.blob(blob_name).delete(if_generation_match=generation)


def _try_lock(
    bucket: Any,
    blob_name: str,
    token: str,
    errors: Callable[[], contextlib.AbstractContextManager[None]],
    stale_s: float,
) -> int | None:
    """Create the lock object; its generation, or ``None`` while another holds it."""
    blob = bucket.blob(blob_name)
    blob.metadata = {"holder": token}
    try:
        with errors():
            blob.upload_from_string(token.encode(), if_generation_match=0)
        return int(blob.generation)
    except gexc.PreconditionFailed:
        pass
    with errors():
        held = bucket.get_blob(blob_name)
    if held is None:
        return None
    if (held.metadata or {}).get("holder") == token:
        return int(held.generation)  # our own create, retried after it had landed
    age = dt.datetime.now(dt.UTC) - held.time_created
    if age.total_seconds() > stale_s:
        with contextlib.suppress(gexc.NotFound, gexc.PreconditionFailed):
            held.delete(if_generation_match=held.generation)
    return None
