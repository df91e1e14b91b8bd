"""The ``scorebus`` command (typer + rich). Nothing imports this module.

Every command takes ``--broker`` / ``--store`` (else ``SCOREBUS_BROKER`` /
``SCOREBUS_STORE``, else the embedded files under ``./.scorebus/``). A scorebus
error ends in one red line and exit code 2, never a traceback.
"""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import ScorebusError
from . import batch as batch_cmd
from . import demo as demo_cmd
from . import deploy as deploy_cmd
from . import dlq as dlq_cmd
from . import drift_cmd, ops
from . import jobs as jobs_cmd
from . import models as models_cmd
from . import topics as topics_cmd
from . import workflows as workflows_cmd

app = typer.Typer(
    name="scorebus",
    help="Event-driven machine-learning scoring: brokers in, models in the middle, idempotent sinks out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("demo")(demo_cmd.demo)
app.command("run")(ops.run)
app.command("publish")(ops.publish)
app.command("status")(ops.status)
app.command("results")(ops.results)
app.command("ingest")(ops.ingest)
app.add_typer(dlq_cmd.dlq_app, name="dlq")
app.add_typer(topics_cmd.topics_app, name="topics")
app.add_typer(models_cmd.models_app, name="models")
app.command("serve-model")(models_cmd.serve_model)
app.command("batch-predict")(batch_cmd.batch_predict)
app.add_typer(jobs_cmd.jobs_app, name="jobs")
app.add_typer(deploy_cmd.deploy_app, name="deploy")
app.command("workflows")(workflows_cmd.workflows)
app.command("drift")(drift_cmd.drift)

err = Console(stderr=True)


def main() -> None:
    """Console-script entry point."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except (ScorebusError, ImportError) as exc:
        # ImportError: an optional SDK is missing; its message names the pip extra.
        # escape: "pip install 'scorebus[gcp]'" must not lose "[gcp]" as markup.
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
