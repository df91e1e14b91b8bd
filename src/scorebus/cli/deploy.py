"""``scorebus deploy gcp``: run an app on Google Cloud, declared with Pulumi.

    scorebus deploy gcp --project P --region R --app fraud_app:app            # pulumi up
    scorebus deploy gcp --project P --region R --app fraud_app:app --preview  # plan only
    scorebus deploy gcp --project P --region R --app fraud_app:app --destroy
    scorebus deploy gcp --project P --region R --app fraud_app:app --emit infra/

The deploy layer (pulumi, pulumi-gcp) is imported only here, when the command
runs, so the rest of the CLI works without ``scorebus[deploy]``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .._extras import load_backend
from ..errors import ConfigError
from .common import RegistryOpt, err, out

deploy_app = typer.Typer(help="Deploy an app to the cloud with Pulumi.", no_args_is_help=True)


def _deploy_layer(module: str, attr: str) -> Any:
    """``scorebus.deploy.MODULE.ATTR``; without pulumi, an ImportError naming the extra."""
    return load_backend("scorebus.deploy", module, attr, "deploy")


def _engine_output(line: str) -> None:
    sys.stderr.write(line if line.endswith("\n") else line + "\n")


@deploy_app.command("gcp")
def gcp(
    project: Annotated[str, typer.Option("--project", help="Google Cloud project id.")],
    region: Annotated[str, typer.Option("--region", help="Region, e.g. europe-west4.")],
    app: Annotated[str, typer.Option("--app", help="The app to deploy, MODULE:ATTRIBUTE.")],
    preview: Annotated[
        bool, typer.Option("--preview", help="Show what would change, change nothing.")
    ] = False,
    destroy: Annotated[
        bool, typer.Option("--destroy", help="Remove what the stack created (results stay).")
    ] = False,
    emit: Annotated[
        Path | None,
        typer.Option("--emit", help="Write a standalone Pulumi project into DIR instead."),
    ] = None,
    stack: Annotated[str, typer.Option("--stack", help="Pulumi stack name.")] = "dev",
    serving_image: Annotated[
        str | None,
        typer.Option(
            "--serving-image",
            help="scorebus serving image in Artifact Registry: deploy the model to Vertex AI.",
        ),
    ] = None,
    registry: RegistryOpt = None,
) -> None:
    """Run APP on Google Cloud, declared with Pulumi (see docs/deploy.md).

    Pub/Sub topics and push subscriptions with a dead-letter topic, a Cloud
    Function (2nd gen), least-privilege identities, a Vertex AI endpoint and a
    BigQuery results table, through Pulumi's Automation API.
    """
    if preview and destroy:
        raise ConfigError("--preview and --destroy exclude each other")
    if emit is not None and (preview or destroy):
        raise ConfigError("--emit writes a project for `pulumi` itself: drop --preview/--destroy")
    args_type = _deploy_layer("args", "ScorebusGcpArgs")
    vertex_type = _deploy_layer("args", "VertexArgs")
    args = args_type(
        project=project,
        region=region,
        app=app,
        registry=str(registry) if registry else None,
        vertex=vertex_type(serving_image=serving_image) if serving_image else None,
    )
    if emit is not None:
        emit_project = _deploy_layer("emit", "emit_project")
        for path in emit_project(args, emit):
            out.print(str(path), highlight=False)
        err.print(f"next: cd {emit} && pulumi up", highlight=False)
        return
    deploy_gcp = _deploy_layer("automation", "deploy_gcp")
    action = "preview" if preview else "destroy" if destroy else "up"
    result: dict[str, Any] = deploy_gcp(args, stack=stack, action=action, on_output=_engine_output)
    table = Table(title=f"{action}: {app} on {project}/{region} (stack {stack})")
    table.add_column("output" if action == "up" else "change")
    table.add_column("value")
    for key, value in sorted(result.items()):
        table.add_row(str(key), str(value))
    out.print(table)
