"""The typed arguments of the ``ScorebusGcp`` component.

Frozen keyword-only value objects, checked when built, so a bad runtime or a
concurrency Cloud Run refuses fails before Pulumi starts, with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import ConfigError

MIN_RUNTIME = (3, 12)
_RUNTIME = re.compile(r"^python3(\d+)$")


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


@dataclass(frozen=True, kw_only=True)
class VertexArgs:
    """Serve a registry model from the Vertex AI endpoint.

    Args:
        serving_image: the scorebus serving container (``serving/Dockerfile``) in
            Artifact Registry, e.g. ``europe-west4-docker.pkg.dev/P/scorebus/serve:0.1.0``.
        model: a registry reference; the first model the scorers name by default.
        machine_type: the replicas' machine type.
        min_replicas, max_replicas: autoscaling bounds (at least one replica always runs).
        traffic_percentage: the new model's share; models already on the endpoint
            keep the rest in proportion (a first deployment takes 100).
    """

    serving_image: str
    model: str | None = None
    machine_type: str = "n1-standard-2"
    min_replicas: int = 1
    max_replicas: int = 1
    traffic_percentage: int = 100

    def __post_init__(self) -> None:
        _check(bool(self.serving_image), "VertexArgs(serving_image=...): an image URI is needed")
        _check(
            1 <= self.min_replicas <= self.max_replicas,
            f"VertexArgs: need 1 <= min_replicas ({self.min_replicas}) <= max_replicas "
            f"({self.max_replicas})",
        )
        _check(
            0 <= self.traffic_percentage <= 100,
            f"VertexArgs(traffic_percentage={self.traffic_percentage}): must be in 0..100",
        )


@dataclass(frozen=True, kw_only=True)
class ScorebusGcpArgs:
    """Where and how to deploy an app.

    Args:
        project, region: the Google Cloud project and region of every resource.
        app: ``MODULE:ATTRIBUTE`` of the app, importable from the current directory.
        dataset, table: the BigQuery results table (created here).
        runtime: Cloud Functions runtime, ``python312`` or newer.
        memory, cpu: per instance; ``concurrency`` > 1 needs at least one CPU.
        concurrency: pushes one instance handles at once; they are micro-batched
            together, so this bounds the batch size a function can reach.
        min_instances, max_instances: scaling bounds (0 = scale to zero).
        registry: the model registry folder (default ``SCOREBUS_REGISTRY`` or
            ``.scorebus/models``).
        requirements: more requirement lines for the function (the app's own).
        scorebus_requirement: replaces the pinned ``scorebus[...]==VERSION`` line.
        include: more files or folders to ship, relative to the current directory.
        env: more environment variables for the function.
        vertex: deploy a model to the Vertex AI endpoint (``None``: the endpoint
            is created, nothing is deployed to it).
        enable_apis: enable the Google APIs the resources need (never disabled on destroy).
        keep_results: leave the dataset and table in place on destroy.
        project_number: skips looking it up (the Pub/Sub service agent's email needs it).
        endpoint_id: the Vertex AI endpoint's numeric id (derived from project,
            region and app by default).
    """

    project: str
    region: str
    app: str
    dataset: str = "scorebus"
    table: str = "results"
    runtime: str = "python312"
    memory: str = "1Gi"
    cpu: str = "1"
    concurrency: int = 80
    min_instances: int = 0
    max_instances: int = 10
    registry: str | None = None
    requirements: tuple[str, ...] = ()
    scorebus_requirement: str | None = None
    include: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    vertex: VertexArgs | None = None
    enable_apis: bool = True
    keep_results: bool = True
    project_number: str | None = None
    endpoint_id: str | None = None

    def __post_init__(self) -> None:
        _check(bool(self.project) and bool(self.region), "project and region are both needed")
        _check(":" in self.app, f"app {self.app!r}: expected MODULE:ATTRIBUTE")
        found = _RUNTIME.match(self.runtime)
        _check(
            found is not None and (3, int(found.group(1))) >= MIN_RUNTIME,
            f"runtime {self.runtime!r}: use python312 or newer (python37/38 are "
            "decommissioned, 39-311 are on their way out)",
        )
        _check(
            1 <= self.concurrency <= 1000,
            f"concurrency={self.concurrency}: Cloud Run allows 1..1000",
        )
        _check(
            0 <= self.min_instances <= self.max_instances and self.max_instances >= 1,
            f"need 0 <= min_instances ({self.min_instances}) <= max_instances "
            f"({self.max_instances}), max_instances >= 1",
        )
        _check(
            re.fullmatch(r"[A-Za-z0-9_]{1,1024}", self.dataset) is not None,
            f"dataset {self.dataset!r}: letters, digits and underscores only",
        )
        _check(
            re.fullmatch(r"[A-Za-z0-9_]{1,1024}", self.table) is not None,
            f"table {self.table!r}: letters, digits and underscores only",
        )
        _check(
            not any(k.startswith(("SCOREBUS_", "X_GOOGLE_")) for k in self.env),
            "env: SCOREBUS_* variables are set by the deployment; X_GOOGLE_* are reserved",
        )
