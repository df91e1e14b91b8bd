"""Options and helpers shared by the commands."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console

from ..app import Settings

out = Console()
err = Console(stderr=True)

BrokerOpt = Annotated[
    str | None,
    typer.Option(
        "--broker", help="Broker URL (sqlite:///FILE, memory://NAME). Env: SCOREBUS_BROKER."
    ),
]
StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Results store URL: sqlite:///FILE, postgresql://..., bigquery://P/D/T, file:///DIR. "
        "Env: SCOREBUS_STORE.",
    ),
]
RegistryOpt = Annotated[
    str | None,
    typer.Option(
        "--registry",
        help="Model registry: a folder, or gs://BUCKET/PREFIX. Env: SCOREBUS_REGISTRY.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of a table.")]
TrustOpt = Annotated[
    bool, typer.Option("--trust-model", help="Allow pickle/joblib model files (runs their code).")
]


def settings(
    broker: str | None = None,
    store: str | None = None,
    registry: str | os.PathLike[str] | None = None,
    trust_models: bool | None = None,
) -> Settings:
    """Flags over environment over defaults."""
    return Settings.from_env().override(
        broker=broker, store=store, registry=registry, trust_models=trust_models or None
    )


def print_json(obj: Any) -> None:
    typer.echo(msgspec.json.encode(obj).decode())


def redact(url: str) -> str:
    """The URL with any password replaced, for printing."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def timestamp(t: float) -> str:
    """A Unix time as UTC ``YYYY-MM-DD HH:MM:SS.mmm``."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
