"""``scorebus batch-predict``: score a whole CSV, JSON-lines or Parquet file."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..app.loader import load_object
from ..errors import ConfigError
from ..models.registry import open_registry
from ..runtime.batch import batch_predict as run_batch
from .common import JsonOpt, RegistryOpt, TrustOpt, err, out, print_json, settings


def batch_predict(
    file: Annotated[
        str, typer.Argument(help="Local path, file:// or gs:// URI (.csv, .jsonl, .parquet).")
    ],
    model: Annotated[
        str, typer.Option("--model", "-m", help="NAME[@VERSION|@ALIAS] in the registry.")
    ],
    schema: Annotated[
        str | None,
        typer.Option("--schema", help="MODULE:Type each row must match (msgspec/pydantic)."),
    ] = None,
    out_uri: Annotated[
        str | None,
        typer.Option("--out", help="Results file (default: NAME.predictions.EXT beside it)."),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 4096,
    trust_model: TrustOpt = False,
    json_out: JsonOpt = False,
    registry: RegistryOpt = None,
) -> None:
    """Score every row of FILE in batches; bad rows are reported with their row numbers."""
    cfg = settings(registry=registry, trust_models=trust_model)
    row_type = load_object(schema, "schema") if schema else None
    if row_type is not None and not isinstance(row_type, type):
        raise ConfigError(f"--schema {schema!r} is not a type")
    loaded = open_registry(cfg.registry).load(model, trust=cfg.trust_models)
    storage: Any = None
    if file.startswith("gs://"):
        from ..gcp.storage import GcsStorage

        storage = GcsStorage()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
        console=err,
        transient=json_out,
    ) as bar:
        task = bar.add_task(file, total=None)

        def progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        try:
            report = run_batch(
                file,
                model=loaded,
                schema=row_type,
                out_uri=out_uri,
                batch_size=batch_size,
                storage=storage,
                progress=progress,
            )
        except FileNotFoundError as exc:
            raise ConfigError(f"no such file: {file!r}") from exc
    if json_out:
        print_json(report.to_dict())
        return
    out.print(
        f"{report.scored:,} of {report.rows:,} rows scored with {report.model} in "
        f"{report.seconds:.2f} s -> {report.output_uri}",
        highlight=False,
    )
    if report.bad:
        out.print(
            f"[yellow]{report.bad:,} bad row(s)[/yellow] -> {report.errors_uri}", highlight=False
        )
        for row in report.bad_rows[:10]:
            out.print(f"  row {row.row}: {row.reason}: {row.error}", highlight=False)
