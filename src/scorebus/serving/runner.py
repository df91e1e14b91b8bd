"""Pick the model to serve and run the server: what ``scorebus serve-model`` calls.

Where the model comes from, decided once:

1. ``AIP_STORAGE_URI`` set (always, on Vertex AI): the model file found there.
   A registry version folder (with ``meta.json``) brings its name, version,
   flavour and features; a bare folder must hold exactly one model file
   (``.skops``, ``.onnx``, or ``.pkl``/``.joblib`` with ``trust``). A
   ``NAME[@VERSION]`` given as well only renames and relabels it.
2. Otherwise ``NAME[@VERSION_OR_ALIAS]`` resolved in the registry (a folder, or
   ``gs://BUCKET/PREFIX``: the version is downloaded to the local cache).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..models.base import Model, ModelRef
from ..models.loader import FLAVOURS_BY_SUFFIX, build_model
from ..models.registry import DEFAULT_ROOT, open_registry
from ..models.version import read_version
from .app import create_app
from .contract import ServingSettings, local_artifacts


def load_served_model(
    ref: str | ModelRef | None = None,
    registry_root: str | os.PathLike[str] | None = None,
    *,
    settings: ServingSettings | None = None,
    trust: bool = False,
) -> Model:
    """The (not yet loaded) model the server will serve.

    Args:
        ref: ``NAME[@VERSION_OR_ALIAS]``; optional when ``AIP_STORAGE_URI`` is set.
        registry_root: The registry folder or ``gs://`` URL; default ``.scorebus/models``.
        settings: AIP_* settings; default read from the environment.
        trust: Allow pickle/joblib model files. Only for files you trust.

    Returns:
        An unloaded model; ``create_app`` loads it on startup.

    Raises:
        ConfigError: No reference and no ``AIP_STORAGE_URI``; an unknown
            reference; no single model file at the storage URI.
        ImportError: ``gs://`` artifacts without google-cloud-storage.
    """
    settings = settings or ServingSettings.from_env()
    parsed = ModelRef.parse(ref) if isinstance(ref, str) else ref
    if settings.storage_uri:
        return _from_artifacts(local_artifacts(settings.storage_uri), parsed, trust)
    if parsed is None:
        raise ConfigError("no model to serve: give NAME[@VERSION] or set AIP_STORAGE_URI")
    mv = open_registry(registry_root or DEFAULT_ROOT).fetch(parsed)
    return build_model(
        mv.file_path,
        name=mv.name,
        version=mv.version,
        trust=trust,
        features=mv.features or None,
        flavour=mv.flavour,
    )


def _from_artifacts(path: Path, ref: ModelRef | None, trust: bool) -> Model:
    name, version, features, flavour = path.stem, "1", None, None
    meta = path / "meta.json"
    if meta.is_file():
        mv = read_version(meta)
        path, name, version = mv.file_path, mv.name, mv.version
        features, flavour = mv.features or None, mv.flavour
    elif path.is_dir():
        found = sorted(
            p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FLAVOURS_BY_SUFFIX
        )
        if len(found) != 1:
            listed = ", ".join(p.name for p in found) or "none"
            raise ConfigError(
                f"{path}: expected exactly one model file "
                f"({', '.join(sorted(FLAVOURS_BY_SUFFIX))}), found {listed}"
            )
        path, name = found[0], found[0].stem
    if ref is not None:
        name, version = ref.name, ref.selector or version
    return build_model(
        path, name=name, version=version, trust=trust, features=features, flavour=flavour
    )


def serve(
    ref: str | ModelRef | None = None,
    registry_root: str | os.PathLike[str] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    trust: bool = False,
    settings: ServingSettings | None = None,
    max_concurrency: int = 4,
    log_level: str = "info",
) -> None:
    """Serve one model over HTTP until SIGTERM/SIGINT (then finish in-flight requests).

    Args:
        ref: As for ``load_served_model``.
        registry_root: As for ``load_served_model``.
        host: Interface to bind; ``0.0.0.0`` in a container.
        port: Port; default ``AIP_HTTP_PORT``, else 8080.
        trust: Allow pickle/joblib model files.
        settings: AIP_* settings; default read from the environment.
        max_concurrency: Predicts running at once.
        log_level: uvicorn's log level.

    Raises:
        ConfigError: As for ``load_served_model``, or bad AIP_* values.
        ModelLoadError: The model file cannot or must not be loaded.
        ImportError: uvicorn or starlette is not installed.
    """
    settings = settings or ServingSettings.from_env()
    model = load_served_model(ref, registry_root, settings=settings, trust=trust)
    # Loaded before the port opens: a bad file fails here with its own message,
    # and the platform's health check never sees a half-started server.
    model.load()
    app = create_app(
        model,
        health_route=settings.health_route,
        predict_route=settings.predict_route,
        load=False,
        max_concurrency=max_concurrency,
    )
    uvicorn = _uvicorn()
    config = uvicorn.Config(
        app,
        host=host,
        port=port or settings.http_port,
        log_level=log_level,
        lifespan="on",
        ws="none",
        timeout_graceful_shutdown=30,
    )
    uvicorn.Server(config).run()


def _uvicorn() -> Any:
    try:
        import uvicorn
    except ImportError as exc:
        raise ImportError("the model server needs uvicorn: pip install 'scorebus[http]'") from exc
    return uvicorn
