"""``scorebus models``: the model registry (a folder, or ``gs://BUCKET/PREFIX``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.table import Table

from ..errors import ConfigError
from ..models.registry import ModelRegistry, open_registry
from .common import JsonOpt, RegistryOpt, TrustOpt, err, out, print_json, settings
from .compare import compare
from .model_show import show

models_app = typer.Typer(help="List, register and promote model versions.", no_args_is_help=True)


def _registry(location: str | None) -> ModelRegistry:
    return open_registry(settings(registry=location).registry)


@models_app.command("list")
def list_models(json_out: JsonOpt = False, registry: RegistryOpt = None) -> None:
    """Every model, version and alias in the registry."""
    reg = _registry(registry)
    rows: list[dict[str, Any]] = []
    for name in reg.names():
        aliases = reg.aliases(name)
        for version in reg.versions(name):
            mv = reg.get(name, version)
            rows.append(
                {
                    "name": name,
                    "version": version,
                    "flavour": mv.flavour,
                    "aliases": sorted(a for a, v in aliases.items() if v == version),
                    "metrics": mv.metrics,
                    "created_at": mv.created_at,
                }
            )
    if json_out:
        print_json(rows)
        return
    if not rows:
        err.print("no models registered (scorebus models register NAME FILE)")
        return
    table = Table()
    for col in ("name", "version", "flavour", "aliases", "metrics", "created"):
        table.add_column(col)
    for r in rows:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(r["metrics"].items())[:4])
        table.add_row(
            r["name"], r["version"], r["flavour"], ", ".join(r["aliases"]), metrics, r["created_at"]
        )
    out.print(table)


@models_app.command("register")
def register(
    name: Annotated[str, typer.Argument(help="Model name.")],
    file: Annotated[Path, typer.Argument(help="Model file: .onnx, .skops (safe) or .pkl/.joblib.")],
    alias: Annotated[str | None, typer.Option("--alias", help="Point this alias at it.")] = None,
    features: Annotated[
        str | None,
        typer.Option("--features", help="Comma-separated input feature names, in order."),
    ] = None,
    trust_model: TrustOpt = False,
    json_out: JsonOpt = False,
    registry: RegistryOpt = None,
) -> None:
    """Register a model file as the next version of NAME."""
    if not file.is_file():
        raise ConfigError(f"no such model file: {str(file)!r}")
    mv = _registry(registry).register(
        name,
        file,
        alias=alias,
        features=tuple(f.strip() for f in features.split(",")) if features else None,
        trust=trust_model,
    )
    if json_out:
        print_json(msgspec.structs.asdict(mv))
    else:
        err.print(f"registered {mv.ref} ({mv.flavour})" + (f" as {alias}" if alias else ""))


@models_app.command("promote")
def promote(
    name: Annotated[str, typer.Argument()],
    version: Annotated[str, typer.Argument()],
    alias: Annotated[str, typer.Option("--alias", help="The alias to move.")] = "champion",
    registry: RegistryOpt = None,
) -> None:
    """Point ALIAS (default champion) at NAME's VERSION; the previous holder is kept for rollback."""
    mv = _registry(registry).promote(name, version, alias)
    err.print(f"{alias} of {name} is now version {mv.version}")


@models_app.command("rollback")
def rollback(
    name: Annotated[str, typer.Argument()],
    alias: Annotated[str, typer.Option("--alias")] = "champion",
    registry: RegistryOpt = None,
) -> None:
    """Move ALIAS back to the version it pointed at before the last promote."""
    mv = _registry(registry).rollback(name, alias)
    err.print(f"{alias} of {name} is back at version {mv.version}")


models_app.command("show")(show)
models_app.command("compare")(compare)


def serve_model(
    ref: Annotated[
        str | None,
        typer.Argument(metavar="[NAME[@VERSION]]", help="Registry model; else AIP_STORAGE_URI."),
    ] = None,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[
        int | None, typer.Option("--port", help="Default: AIP_HTTP_PORT, else 8080.")
    ] = None,
    trust_model: TrustOpt = False,
    registry: RegistryOpt = None,
) -> None:
    """Serve a model over HTTP: the Vertex AI custom-container contract and OIP v2."""
    from ..serving import serve

    serve(
        ref or None, settings(registry=registry).registry, host=host, port=port, trust=trust_model
    )
