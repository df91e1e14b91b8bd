"""``ScorebusGcp``: one Pulumi component that runs a scorebus app on Google Cloud.

    Pub/Sub topic --push (OIDC, retry, dead letter)--> Cloud Function (2nd gen)
        -> model in-process (shipped in the source) or on the Vertex AI endpoint
        -> BigQuery results table, output topic(s)

Example (a Pulumi program's ``__main__.py``)::

    from scorebus.deploy import ScorebusGcp, ScorebusGcpArgs, export_outputs

    export_outputs(ScorebusGcp("fraud", ScorebusGcpArgs(
        project="my-project", region="europe-west4", app="fraud_app:app")))

Every child has ``parent=self`` and waits for the APIs it needs; the outputs are
registered at the end. What is declared, and why, is in docs/deploy.md; the
typed arguments are in ``args``.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_gcp as gcp

from ..app import Settings, load_app
from ..models.registry import open_registry
from . import iam, pubsub
from .args import ScorebusGcpArgs, VertexArgs
from .bigquery import declare_results
from .endpoint import declare_deployment, declare_endpoint
from .function import declare_function, source_bucket
from .plan import DeployPlan, check_sinks, plan_app

TYPE = "scorebus:gcp:ScorebusGcp"
APIS = (
    "aiplatform.googleapis.com",
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "iam.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "storage.googleapis.com",
)

__all__ = ["TYPE", "ScorebusGcp", "ScorebusGcpArgs", "VertexArgs", "export_outputs"]


class ScorebusGcp(pulumi.ComponentResource):
    """Topics, push subscriptions, function, identities, endpoint and results table of an app.

    Args:
        name: the component's name; its children are named after it.
        args: what to deploy where.
        opts: options of the component itself.

    Raises:
        ConfigError: the app cannot be loaded or cannot run as declared (see ``plan``),
            or a model it names is not in the registry.
    """

    outputs: dict[str, Any]

    def __init__(
        self, name: str, args: ScorebusGcpArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        app = load_app(args.app)
        self.plan: DeployPlan = plan_app(app)
        p, project, region = self.plan, args.project, args.region
        registry = open_registry(args.registry or Settings.from_env().registry)
        apis = self._apis(name, project) if args.enable_apis else []
        child = pulumi.ResourceOptions(parent=self, depends_on=apis)
        grants = iam.Grants(name, project, region, child)

        runtime_sa = grants.account(
            "runtime", iam.account_id(p.slug, "run"), f"scorebus {p.app_name}: the function"
        )
        push_sa = grants.account(
            "push", iam.account_id(p.slug, "push"), f"scorebus {p.app_name}: signs pushes"
        )
        runtime = iam.as_member(runtime_sa.email)

        topics = {
            t: pubsub.topic(
                f"{name}-topic-{t}", t, project=project, keep=t in p.output_topics, opts=child
            )
            for t in sorted({*p.input_topics, *p.output_topics})
        }
        dead = pubsub.topic(
            f"{name}-dead-letter", p.dead_letter_topic, project=project, keep=True, opts=child
        )
        dead_keep = pubsub.keep_subscription(
            f"{name}-dead-letter-keep",
            p.dead_letter_subscription,
            dead,
            project=project,
            opts=child,
        )
        for t in p.output_topics:
            grants.topic(f"runtime-publishes-{t}", topics[t], iam.PUBLISHER, runtime)
        grants.topic("runtime-publishes-dead-letter", dead, iam.PUBLISHER, runtime)

        results = declare_results(
            name,
            project=project,
            region=region,
            dataset_id=args.dataset,
            table_id=args.table,
            keep_on_destroy=args.keep_results,
            opts=child,
        )
        check_sinks(app, results.url)
        grants.dataset("runtime-writes-results", results.dataset, iam.DATA_EDITOR, runtime)

        endpoint = declare_endpoint(
            name,
            project=project,
            region=region,
            app_name=p.app_name,
            app_ref=args.app,
            endpoint_id=args.endpoint_id,
            opts=child,
        )
        role = grants.predict_role(f"scorebus_{p.slug.replace('-', '_')}_predict")
        grants.endpoint("runtime-predicts", endpoint.resource, role.name, runtime)
        bucket = source_bucket(name, project=project, region=region, app_slug=p.slug, opts=child)
        deployment = (
            declare_deployment(
                name,
                args.vertex,
                models=p.models,
                registry=registry,
                bucket=bucket,
                endpoint=endpoint,
                project=project,
                region=region,
                opts=child,
            )
            if args.vertex
            else None
        )

        function = declare_function(
            name,
            args,
            p,
            bucket=bucket,
            registry=registry,
            runtime_email=runtime_sa.email,
            store_url=results.url,
            endpoint=endpoint.path,
            opts=child,
        )
        uri = function.service_config.apply(lambda c: (c.uri if c else None) or "")
        service = function.service_config.apply(lambda c: (c.service if c else None) or "")
        grants.service("push-invokes", service, iam.INVOKER, iam.as_member(push_sa.email))

        agent = iam.pubsub_agent(args.project_number or self._project_number(project))
        grants.topic("agent-forwards-dead-letters", dead, iam.PUBLISHER, agent)
        subscriptions = []
        for d in p.deliveries:
            sub = pubsub.push_subscription(
                f"{name}-push-{d.topic}",
                d,
                topics[d.topic],
                dead,
                function_uri=uri,
                push_account=push_sa.email,
                project=project,
                opts=child,
            )
            grants.subscription(f"agent-acks-{d.topic}", sub, iam.SUBSCRIBER, agent)
            subscriptions.append(sub.name)

        self.outputs = {
            "function_uri": uri,
            "function_name": function.name,
            "input_topics": list(p.input_topics),
            "output_topics": list(p.output_topics),
            "push_subscriptions": subscriptions,
            "dead_letter_topic": dead.name,
            "dead_letter_subscription": dead_keep.name,
            "endpoint_id": endpoint.resource.name,
            "endpoint": endpoint.path,
            "deployed_model_id": deployment.deployed_model_id if deployment else None,
            "table_id": results.table_id,
            "source_bucket": bucket.name,
            "runtime_service_account": runtime_sa.email,
            "push_service_account": push_sa.email,
        }
        self.register_outputs(self.outputs)

    def _apis(self, name: str, project: str) -> list[pulumi.Resource]:
        """The Google APIs the children need; left enabled on destroy (others may use them)."""
        return [
            gcp.projects.Service(
                f"{name}-api-{api.split('.')[0]}",
                gcp.projects.ServiceArgs(service=api, project=project, disable_on_destroy=False),
                opts=pulumi.ResourceOptions(parent=self),
            )
            for api in APIS
        ]

    def _project_number(self, project: str) -> pulumi.Output[str]:
        found = gcp.organizations.get_project_output(
            project_id=project, opts=pulumi.InvokeOutputOptions(parent=self)
        )
        return found.number


def export_outputs(component: ScorebusGcp) -> None:
    """``pulumi.export`` each of the component's outputs: they become the stack outputs."""
    for key, value in component.outputs.items():
        if value is not None:
            pulumi.export(key, value)
