"""The Vertex AI custom-container contract: AIP_* settings and where the model files are.

Vertex AI starts a serving container with these variables (defaults apply
when run anywhere else)::

    AIP_HTTP_PORT      port to listen on                      8080
    AIP_HEALTH_ROUTE   GET: 200 once the model is loaded      /health
    AIP_PREDICT_ROUTE  POST: {"instances": [...]}             /predict
    AIP_STORAGE_URI    the model's artifacts, gs://... or a local path / file:// URI

Precedence, once: an argument to ``serve`` > the AIP_* variable > the default.
"""

from __future__ import annotations

import importlib
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

import msgspec

from ..errors import ConfigError, ScorebusError

log = logging.getLogger(__name__)


class RequestError(ScorebusError):
    """A request the server answers with an HTTP error and ``{"error": message}``.

    Args:
        status: HTTP status (400 malformed, 404 unknown model, 413 too large, 503 loading).
        message: Says what was wrong with the request.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ServingSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Where the model server listens, its routes, and where its model files are."""

    http_port: int = 8080
    health_route: str = "/health"
    predict_route: str = "/predict"
    storage_uri: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServingSettings:
        """Read the AIP_* variables.

        Args:
            env: The environment to read; default ``os.environ``.

        Returns:
            The settings, defaults where a variable is unset or empty.

        Raises:
            ConfigError: A port that is not a number in 1-65535, or a route
                that does not start with ``/``.
        """
        env = os.environ if env is None else env
        port_text = env.get("AIP_HTTP_PORT") or "8080"
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigError(f"AIP_HTTP_PORT={port_text!r}: expected a port number 1-65535")
        health = env.get("AIP_HEALTH_ROUTE") or "/health"
        predict = env.get("AIP_PREDICT_ROUTE") or "/predict"
        for var, route in (("AIP_HEALTH_ROUTE", health), ("AIP_PREDICT_ROUTE", predict)):
            if not route.startswith("/"):
                raise ConfigError(f"{var}={route!r}: a route starts with '/'")
        return cls(
            http_port=int(port_text),
            health_route=health,
            predict_route=predict,
            storage_uri=env.get("AIP_STORAGE_URI") or None,
        )


def local_artifacts(uri: str, *, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """A local path holding the artifacts at ``uri``, downloading ``gs://`` ones.

    Args:
        uri: ``gs://bucket/prefix``, ``file:///path`` or a plain path (file or folder).
        cache_dir: Where to download ``gs://`` artifacts; default a new temporary folder.

    Returns:
        The local file or folder.

    Raises:
        ConfigError: Nothing at a local path, an empty ``gs://`` prefix, or an
            unsupported scheme.
        ImportError: ``gs://`` without google-cloud-storage installed.
    """
    parts = urlsplit(uri)
    if parts.scheme == "gs":
        return _download_gcs(parts.netloc, parts.path.lstrip("/"), cache_dir)
    if parts.scheme == "file":
        path = Path(unquote(parts.path))
    elif len(parts.scheme) <= 1:  # a plain path (or a Windows drive letter)
        path = Path(uri)
    else:
        raise ConfigError(f"AIP_STORAGE_URI={uri!r}: expected gs://..., file://... or a path")
    if not path.exists():
        raise ConfigError(f"AIP_STORAGE_URI={uri!r}: {path} does not exist")
    return path


def _download_gcs(bucket: str, prefix: str, cache_dir: str | os.PathLike[str] | None) -> Path:
    try:
        storage = importlib.import_module("google.cloud.storage")
    except ImportError as exc:
        raise ImportError(
            "AIP_STORAGE_URI=gs://... needs google-cloud-storage: pip install 'scorebus[gcs]'"
        ) from exc
    target = Path(cache_dir or tempfile.mkdtemp(prefix="scorebus-model-"))
    prefix = prefix.rstrip("/")
    count = 0
    for blob in storage.Client().list_blobs(bucket, prefix=prefix):
        name: str = blob.name
        if name == prefix:  # the URI names one object
            relative = Path(name).name
        elif not prefix or name.startswith(prefix + "/"):
            relative = name[len(prefix) :].lstrip("/")
        else:
            continue  # gs://b/model matched gs://b/model2/...
        if name.endswith("/") or ".." in Path(relative).parts:
            continue  # folder placeholders; names that would escape the target
        local = target / relative
        local.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(local))
        count += 1
    if count == 0:
        raise ConfigError(f"AIP_STORAGE_URI=gs://{bucket}/{prefix}: no objects under it")
    log.info("downloaded %d model artifact(s) from gs://%s/%s to %s", count, bucket, prefix, target)
    return target
