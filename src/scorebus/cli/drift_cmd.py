"""``scorebus drift``: compare a file's rows with a model version's training reference."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.table import Table

from ..errors import ConfigError
from ..models.registry import open_registry
from ..models.version import ModelVersion
from ..runtime.files import LocalStorage, RowReader, Storage, detect_format
from ..workflows.drift import DriftMonitor, DriftReport, reference_of
from .common import JsonOpt, RegistryOpt, err, out, print_json, settings


def compare_file(
    uri: str,
    mv: ModelVersion,
    *,
    features: Sequence[str] | None = None,
    psi_threshold: float = 0.2,
    ks_pvalue: float | None = 0.01,
    storage: Storage | None = None,
) -> tuple[DriftReport, int]:
    """Every readable row of ``uri`` against ``mv``'s reference: the report and unreadable rows.

    Raises:
        ConfigError: ``mv`` has no reference, an unknown feature, or no such file.
        DecodeError: the file's format is unknown or it cannot be read.
    """
    monitor = DriftMonitor(
        reference_of(mv),
        features=features,
        window=None,
        psi_threshold=psi_threshold,
        ks_pvalue=ks_pvalue,
    )
    storage = storage or LocalStorage()
    fmt = detect_format(uri)
    unreadable = 0
    try:
        with storage.open_read(uri) as f:
            for chunk in RowReader(f, fmt):
                monitor.add([r.data for r in chunk if r.data is not None])
                unreadable += sum(r.data is None for r in chunk)
    except FileNotFoundError as exc:
        raise ConfigError(f"no such file: {uri!r}") from exc
    return monitor.check(), unreadable


def drift(
    model: Annotated[
        str, typer.Option("--model", "-m", help="NAME[@VERSION|@ALIAS] in the registry.")
    ],
    data: Annotated[
        str,
        typer.Option(
            "--data", help="Rows to compare: local path, file:// or gs:// (.csv, .jsonl, .parquet)."
        ),
    ],
    features: Annotated[
        str | None, typer.Option("--features", help="Comma-separated features (default: all).")
    ] = None,
    psi_threshold: Annotated[
        float, typer.Option("--psi-threshold", help="PSI that counts as drift.")
    ] = 0.2,
    ks_pvalue: Annotated[
        float, typer.Option("--ks-pvalue", help="KS level over all features; 0 for PSI only.")
    ] = 0.01,
    json_out: JsonOpt = False,
    registry: RegistryOpt = None,
) -> None:
    """Compare the rows of a file with the training reference of a model version (PSI, KS)."""
    mv = open_registry(settings(registry=registry).registry).resolve(model)
    storage: Any = None
    if data.startswith("gs://"):
        from ..gcp.storage import GcsStorage

        storage = GcsStorage()
    report, unreadable = compare_file(
        data,
        mv,
        features=[f.strip() for f in features.split(",")] if features else None,
        psi_threshold=psi_threshold,
        ks_pvalue=ks_pvalue or None,
        storage=storage,
    )
    if json_out:
        print_json(
            {"model": mv.name, "version": mv.version, "unreadable": unreadable, **report.to_dict()}
        )
        return
    table = Table(title=f"{mv.ref}: {report.rows:,} rows of {data}")
    for col in ("feature", "psi", "ks", "p-value", "drift"):
        table.add_column(col, justify="left" if col in ("feature", "drift") else "right")
    for name, f in report.features.items():
        flag = "[red]yes[/red]" if name in report.drifted else ""
        table.add_row(name, f"{f.psi:.3f}", f"{f.ks:.3f}", f"{f.p_value:.2g}", flag)
    out.print(table)
    if unreadable:
        err.print(f"[yellow]{unreadable:,} unreadable row(s) skipped[/yellow]")
    summary = ", ".join(report.drifted) if report.drifted else "none"
    out.print(f"drifted: {summary}", highlight=False)
