"""Deploy layer: a scorebus app on Google Cloud, declared with Pulumi.

Reads an app (its scorers' topics, batch and retry policies, models) and
declares what runs it: Pub/Sub topics with an explicit push subscription
(OIDC, retry, dead letter), a Cloud Function (2nd gen), least-privilege
identities, a Vertex AI endpoint, and the BigQuery results table. Nothing
imports this package but the CLI (``scorebus deploy gcp``).

Needs ``pip install 'scorebus[deploy]'`` (pulumi, pulumi-gcp); running it needs
the pulumi CLI. See docs/deploy.md.
"""

from __future__ import annotations

from .args import ScorebusGcpArgs, VertexArgs
from .component import TYPE, ScorebusGcp, export_outputs
from .plan import DeployPlan, plan_app, worst_case_batch_s

__all__ = [
    "TYPE",
    "DeployPlan",
    "ScorebusGcp",
    "ScorebusGcpArgs",
    "VertexArgs",
    "export_outputs",
    "plan_app",
    "worst_case_batch_s",
]
