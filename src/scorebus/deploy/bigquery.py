"""The results dataset and table, with the columns the BigQuery sink writes.

The schema is read off the scorer's result type (``ScoreResult``, one field per
column) rather than written out twice, so a field added to the result is a
column added to the table. Three fields carry more meaning than their Python
type: ``output`` is the user's JSON, ``event_time`` and ``scored_at`` are epoch
seconds that the sink sends as RFC 3339 timestamps.

The table is partitioned by day on ``scored_at`` (queries over recent results
read recent partitions only) and clustered by ``scorer`` (one scorer's rows are
stored together; the dedupe view in docs/connectors/bigquery.md partitions by it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgspec
import pulumi
import pulumi_gcp as gcp

from ..sinks.base import ScoreResult

PARTITION_FIELD = "scored_at"
CLUSTERING = ("scorer",)
_BY_NAME = {"output": "JSON", "event_time": "TIMESTAMP", "scored_at": "TIMESTAMP"}
_BY_TYPE: dict[Any, str] = {
    str: "STRING",
    float: "FLOAT",
    int: "INTEGER",
    bool: "BOOLEAN",
    bytes: "BYTES",
}
_REQUIRED = {"scorer", "event_id", PARTITION_FIELD}
_DESCRIPTIONS = {
    "scorer": "scorer name; with event_id, the result's key",
    "event_id": "the CloudEvents id the producer assigned",
    "model": "name of the model that produced the result",
    "model_version": "version of that model",
    "output": "the scorer's result, JSON",
    "event_time": "the event's time",
    "scored_at": "when the result was committed",
    "latency_ms": "event time to commit, ms",
    "service_ms": "receipt to commit, ms",
}


def results_schema(result_type: type[msgspec.Struct] = ScoreResult) -> list[dict[str, str]]:
    """BigQuery column definitions for ``result_type``, in field order."""
    columns = []
    for field in msgspec.structs.fields(result_type):
        kind = _BY_NAME.get(field.name) or _BY_TYPE.get(field.type)
        if kind is None:
            raise TypeError(
                f"{result_type.__name__}.{field.name}: no BigQuery type for {field.type}"
            )
        columns.append(
            {
                "name": field.name,
                "type": kind,
                "mode": "REQUIRED" if field.name in _REQUIRED else "NULLABLE",
                "description": _DESCRIPTIONS.get(field.name, ""),
            }
        )
    return columns


@dataclass(frozen=True)
class Results:
    """The declared dataset, table, and the ``bigquery://`` URL the function writes to."""

    dataset: gcp.bigquery.Dataset
    table: gcp.bigquery.Table
    url: str
    table_id: str


def declare_results(
    name: str,
    *,
    project: str,
    region: str,
    dataset_id: str,
    table_id: str,
    keep_on_destroy: bool,
    opts: pulumi.ResourceOptions,
) -> Results:
    """Declare the dataset and the results table as children named after ``name``.

    ``keep_on_destroy`` leaves both in place on ``pulumi destroy`` (they leave the
    stack, their data stays): results outlive the pipeline that wrote them.
    """
    keep = pulumi.ResourceOptions(retain_on_delete=keep_on_destroy)
    dataset = gcp.bigquery.Dataset(
        f"{name}-dataset",
        gcp.bigquery.DatasetArgs(
            dataset_id=dataset_id,
            project=project,
            location=region,
            description="scorebus results",
            delete_contents_on_destroy=False,
        ),
        opts=pulumi.ResourceOptions.merge(opts, keep),
    )
    table = gcp.bigquery.Table(
        f"{name}-results",
        gcp.bigquery.TableArgs(
            dataset_id=dataset.dataset_id,
            table_id=table_id,
            project=project,
            schema=json.dumps(results_schema()),
            time_partitioning=gcp.bigquery.TableTimePartitioningArgs(
                type="DAY", field=PARTITION_FIELD
            ),
            clusterings=list(CLUSTERING),
            # retain_on_delete does the protecting; this flag would make destroy fail.
            deletion_protection=False,
        ),
        opts=pulumi.ResourceOptions.merge(opts, keep),
    )
    return Results(
        dataset=dataset,
        table=table,
        url=f"bigquery://{project}/{dataset_id}/{table_id}",
        table_id=f"{project}.{dataset_id}.{table_id}",
    )
