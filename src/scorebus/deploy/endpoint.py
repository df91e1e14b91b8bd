"""The Vertex AI endpoint, and the registry model deployed to it.

The endpoint itself costs nothing while nothing is deployed to it, so it is
always declared with its predict-only grant; a model is deployed to it only
when ``VertexArgs`` are given, because a deployed model keeps at least one
replica running (the largest line of the bill, see docs/deploy.md).

The model's registry version folder (model file and ``meta.json``) is uploaded
to the source bucket and handed to Vertex AI as the artifacts of the scorebus
serving container, which reads them from ``AIP_STORAGE_URI``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_gcp as gcp

from ..errors import ConfigError
from ..models.registry import ModelRegistry
from .args import VertexArgs
from .vertex import DeploymentArgs, ModelDeployment


def endpoint_number(project: str, region: str, app: str) -> str:
    """A stable 10-digit endpoint id (Vertex AI ids are numeric, without a leading zero)."""
    digest = int(hashlib.sha256(f"{project}/{region}/{app}".encode()).hexdigest(), 16)
    return str(1_000_000_000 + digest % 9_000_000_000)


@dataclass(frozen=True)
class Endpoint:
    resource: gcp.vertex.AiEndpoint
    path: pulumi.Output[str]  # projects/P/locations/R/endpoints/E


def declare_endpoint(
    name: str,
    *,
    project: str,
    region: str,
    app_name: str,
    app_ref: str,
    endpoint_id: str | None,
    opts: pulumi.ResourceOptions,
) -> Endpoint:
    endpoint = gcp.vertex.AiEndpoint(
        f"{name}-endpoint",
        gcp.vertex.AiEndpointArgs(
            name=endpoint_id or endpoint_number(project, region, app_name),
            display_name=f"scorebus {app_name}",
            description=f"scorebus app {app_ref}",
            location=region,
            region=region,
            project=project,
            labels={"managed-by": "scorebus"},
        ),
        opts=opts,
    )
    path = pulumi.Output.concat(f"projects/{project}/locations/{region}/endpoints/", endpoint.name)
    return Endpoint(endpoint, path)


def declare_deployment(
    name: str,
    vertex: VertexArgs,
    *,
    models: tuple[str, ...],
    registry: ModelRegistry,
    bucket: gcp.storage.Bucket,
    endpoint: Endpoint,
    project: str,
    region: str,
    opts: pulumi.ResourceOptions,
) -> ModelDeployment:
    """Upload the model's version folder and deploy it to ``endpoint`` (dynamic resource).

    Raises:
        ConfigError: no model to deploy, or it is not in the registry.
    """
    ref = vertex.model or (models[0] if models else None)
    if ref is None:
        raise ConfigError("VertexArgs: no model= given and no scorer names a registry model")
    mv = registry.fetch(ref)  # local files: a remote registry's version is downloaded
    prefix = f"models/{mv.name}/{mv.version}"
    artifacts: list[pulumi.Resource] = [
        gcp.storage.BucketObject(
            f"{name}-artifact-{mv.name}-{mv.version}-{file}",
            gcp.storage.BucketObjectArgs(
                bucket=bucket.name,
                name=f"{prefix}/{file}",
                source=pulumi.FileAsset(str(Path(mv.path) / file)),
            ),
            opts=opts,
        )
        for file in (mv.file, "meta.json")
    ]
    args = DeploymentArgs(
        project=project,
        region=region,
        endpoint=endpoint.path,
        display_name=mv.ref,
        artifact_uri=pulumi.Output.concat("gs://", bucket.name, f"/{prefix}/"),
        serving_image=vertex.serving_image,
        machine_type=vertex.machine_type,
        min_replicas=vertex.min_replicas,
        max_replicas=vertex.max_replicas,
        traffic_percentage=vertex.traffic_percentage,
    )
    after = pulumi.ResourceOptions(depends_on=[*artifacts, endpoint.resource])
    return ModelDeployment(f"{name}-model", args, pulumi.ResourceOptions.merge(opts, after))
