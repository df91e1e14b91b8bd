"""The Cloud Function (2nd gen) and the bucket its source archive is uploaded to.

The function is HTTP-triggered: it has no ``event_trigger``, because the push
subscriptions deliver to its URL (see ``pubsub``). It runs ``python312`` or
newer as the runtime service account, with the ``SCOREBUS_*`` settings that
point the entry point at the deployment's table and project:

    SCOREBUS_STORE            bigquery://PROJECT/DATASET/TABLE
    SCOREBUS_BROKER           pubsub://PROJECT?create=none  (publish only, to topics Pulumi made)
    SCOREBUS_REGISTRY         /workspace/_scorebus/models (the models shipped in the source)
    SCOREBUS_VERTEX_ENDPOINT  projects/P/locations/R/endpoints/E, for a scorer whose
                              model is ``VertexModel(os.environ["SCOREBUS_VERTEX_ENDPOINT"], ...)``

Its timeout equals the longest ack deadline of its subscriptions: past that,
Pub/Sub has given up on the push and will redeliver anyway.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import pulumi
import pulumi_gcp as gcp

from ..models.registry import ModelRegistry
from .args import ScorebusGcpArgs
from .plan import DeployPlan
from .source import ENTRY_POINT, REGISTRY_DIR, WORKSPACE, build_archive

ARCHIVE_DIR = Path(tempfile.gettempdir()) / "scorebus-deploy"
EXTRAS = ("bigquery", "gcp", "remote")
LABELS = {"managed-by": "scorebus"}


def bucket_name(project: str, app_slug: str) -> str:
    """A bucket name, globally unique because project ids are (3-63 characters)."""
    name = f"{project}-{app_slug}-scorebus"
    if len(name) <= 63:
        return name
    return f"{name[:46].rstrip('-')}-{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def source_bucket(
    name: str, *, project: str, region: str, app_slug: str, opts: pulumi.ResourceOptions
) -> gcp.storage.Bucket:
    """A private bucket for the source archive and the model artifacts."""
    return gcp.storage.Bucket(
        f"{name}-source",
        gcp.storage.BucketArgs(
            name=bucket_name(project, app_slug),
            project=project,
            location=region,
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            force_destroy=True,
            labels=LABELS,
        ),
        opts=opts,
    )


def declare_function(
    name: str,
    args: ScorebusGcpArgs,
    plan: DeployPlan,
    *,
    bucket: gcp.storage.Bucket,
    registry: ModelRegistry,
    runtime_email: pulumi.Input[str],
    store_url: str,
    endpoint: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> gcp.cloudfunctionsv2.Function:
    """Build the source archive, upload it, and declare the function that runs it."""
    archive = build_archive(
        args.app,
        registry=registry,
        models=plan.models,
        extras=EXTRAS,
        requirements=args.requirements,
        scorebus_requirement=args.scorebus_requirement,
        include=args.include,
    )
    # Named by content: a new archive is a new object, which makes Pulumi rebuild the function.
    source = gcp.storage.BucketObject(
        f"{name}-source-archive",
        gcp.storage.BucketObjectArgs(
            bucket=bucket.name,
            name=f"source/{plan.slug}-{archive.digest[:16]}.zip",
            source=pulumi.FileAsset(str(archive.write(ARCHIVE_DIR))),
        ),
        opts=opts,
    )
    env: dict[str, pulumi.Input[str]] = {
        **args.env,
        "SCOREBUS_STORE": store_url,
        # The runtime identity may only publish: topics are created by Pulumi.
        "SCOREBUS_BROKER": f"pubsub://{args.project}?create=none",
        "SCOREBUS_REGISTRY": f"{WORKSPACE}/{REGISTRY_DIR}",
        "SCOREBUS_VERTEX_ENDPOINT": endpoint,
    }
    storage = gcp.cloudfunctionsv2.FunctionBuildConfigSourceStorageSourceArgs(
        bucket=bucket.name, object=source.name
    )
    return gcp.cloudfunctionsv2.Function(
        f"{name}-function",
        gcp.cloudfunctionsv2.FunctionArgs(
            name=f"{plan.slug}-score",
            location=args.region,
            project=args.project,
            description=f"scorebus app {args.app}",
            build_config=gcp.cloudfunctionsv2.FunctionBuildConfigArgs(
                runtime=args.runtime,
                entry_point=ENTRY_POINT,
                # The generated main.py registers `score` as a CloudEvent function
                # too; this says the same to the buildpack, as docs/gcp.md does.
                environment_variables={"GOOGLE_FUNCTION_SIGNATURE_TYPE": "cloudevent"},
                source=gcp.cloudfunctionsv2.FunctionBuildConfigSourceArgs(storage_source=storage),
            ),
            service_config=gcp.cloudfunctionsv2.FunctionServiceConfigArgs(
                available_memory=args.memory,
                available_cpu=args.cpu,
                timeout_seconds=max(d.ack_deadline_s for d in plan.deliveries),
                max_instance_request_concurrency=args.concurrency,
                min_instance_count=args.min_instances,
                max_instance_count=args.max_instances,
                environment_variables=env,
                service_account_email=runtime_email,
                ingress_settings="ALLOW_ALL",  # Pub/Sub pushes from outside any VPC
                all_traffic_on_latest_revision=True,
            ),
            labels=LABELS,
        ),
        opts=opts,
    )
