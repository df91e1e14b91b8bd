"""Identities and their grants, each on one resource, never on the project.

| identity | role | on |
|---|---|---|
| runtime (the function runs as it) | ``roles/pubsub.publisher`` | each output topic, the dead-letter topic |
| | custom role with ``aiplatform.endpoints.predict`` only | the Vertex AI endpoint |
| | ``roles/bigquery.dataEditor`` | the results dataset |
| push (signs the OIDC token of each push) | ``roles/run.invoker`` | the function's Cloud Run service |
| Pub/Sub service agent | ``roles/pubsub.publisher`` | the dead-letter topic (it forwards letters there) |
| | ``roles/pubsub.subscriber`` | each push subscription (it acks what it forwarded) |

Why a custom role for prediction: ``roles/aiplatform.user`` also creates, changes
and deletes endpoints, models, jobs and datasets across Vertex AI, and no
predefined role is limited to prediction; Google's endpoint access-control page
recommends exactly this custom role, granted on the endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

PUBLISHER = "roles/pubsub.publisher"
SUBSCRIBER = "roles/pubsub.subscriber"
INVOKER = "roles/run.invoker"
DATA_EDITOR = "roles/bigquery.dataEditor"
PREDICT_PERMISSIONS = ("aiplatform.endpoints.predict",)
PRIMITIVE_ROLES = frozenset({"roles/owner", "roles/editor", "roles/viewer"})


def account_id(prefix: str, kind: str) -> str:
    """A service account id (6-30 lowercase letters, digits, dashes) for ``kind``."""
    head = prefix[: 29 - len(kind)].rstrip("-")
    out = f"{head}-{kind}"
    return out if len(out) >= 6 else f"sb-{out}"


def as_member(email: pulumi.Input[str]) -> pulumi.Output[str]:
    """``serviceAccount:EMAIL``."""
    return pulumi.Output.concat("serviceAccount:", email)


def pubsub_agent(project_number: pulumi.Input[str]) -> pulumi.Output[str]:
    """The member of the project's Pub/Sub service agent, which forwards dead letters."""
    return pulumi.Output.concat(
        "serviceAccount:service-", project_number, "@gcp-sa-pubsub.iam.gserviceaccount.com"
    )


@dataclass(frozen=True)
class Grants:
    """Declares the identities and grants of one deployment as children named ``PREFIX-LABEL``.

    Every grant is an ``*IamMember`` on one resource: it adds one member to one
    role there and leaves the resource's other members alone.
    """

    prefix: str
    project: str
    region: str
    opts: pulumi.ResourceOptions

    def account(self, label: str, account: str, description: str) -> gcp.serviceaccount.Account:
        return gcp.serviceaccount.Account(
            f"{self.prefix}-{label}",
            gcp.serviceaccount.AccountArgs(
                account_id=account,
                display_name=description[:100],
                description=description,
                project=self.project,
            ),
            opts=self.opts,
        )

    def predict_role(self, role_id: str) -> gcp.projects.IAMCustomRole:
        """A project custom role that may only call ``:predict`` (granted per endpoint).

        A deleted custom role keeps its id for up to 37 days; the provider undeletes
        it when the same id is declared again, so destroy-then-up works.
        """
        return gcp.projects.IAMCustomRole(
            f"{self.prefix}-predict-role",
            gcp.projects.IAMCustomRoleArgs(
                role_id=role_id,
                project=self.project,
                title="scorebus predict only",
                description="Call online prediction on a Vertex AI endpoint, nothing else",
                permissions=list(PREDICT_PERMISSIONS),
                stage="GA",
            ),
            opts=self.opts,
        )

    def topic(
        self, label: str, topic: gcp.pubsub.Topic, role: str, member: pulumi.Input[str]
    ) -> gcp.pubsub.TopicIAMMember:
        return gcp.pubsub.TopicIAMMember(
            f"{self.prefix}-{label}",
            gcp.pubsub.TopicIAMMemberArgs(
                topic=topic.name, role=role, member=member, project=self.project
            ),
            opts=self.opts,
        )

    def subscription(
        self, label: str, sub: gcp.pubsub.Subscription, role: str, member: pulumi.Input[str]
    ) -> gcp.pubsub.SubscriptionIAMMember:
        return gcp.pubsub.SubscriptionIAMMember(
            f"{self.prefix}-{label}",
            gcp.pubsub.SubscriptionIAMMemberArgs(
                subscription=sub.name, role=role, member=member, project=self.project
            ),
            opts=self.opts,
        )

    def dataset(
        self, label: str, dataset: gcp.bigquery.Dataset, role: str, member: pulumi.Input[str]
    ) -> gcp.bigquery.DatasetIamMember:
        return gcp.bigquery.DatasetIamMember(
            f"{self.prefix}-{label}",
            gcp.bigquery.DatasetIamMemberArgs(
                dataset_id=dataset.dataset_id, role=role, member=member, project=self.project
            ),
            opts=self.opts,
        )

    def endpoint(
        self,
        label: str,
        endpoint: gcp.vertex.AiEndpoint,
        role: pulumi.Input[str],
        member: pulumi.Input[str],
    ) -> gcp.vertex.AiEndpointIamMember:
        return gcp.vertex.AiEndpointIamMember(
            f"{self.prefix}-{label}",
            gcp.vertex.AiEndpointIamMemberArgs(
                endpoint=endpoint.name,
                location=self.region,
                project=self.project,
                role=role,
                member=member,
            ),
            opts=self.opts,
        )

    def service(
        self, label: str, service: pulumi.Input[str], role: str, member: pulumi.Input[str]
    ) -> gcp.cloudrunv2.ServiceIamMember:
        """A grant on the Cloud Run service behind a 2nd-gen function (``run.invoker`` lives here)."""
        return gcp.cloudrunv2.ServiceIamMember(
            f"{self.prefix}-{label}",
            gcp.cloudrunv2.ServiceIamMemberArgs(
                name=service, location=self.region, project=self.project, role=role, member=member
            ),
            opts=self.opts,
        )
