"""Upload a registry model to Vertex AI and deploy it to an endpoint: a Pulumi dynamic provider.

pulumi-gcp declares the endpoint (``gcp.vertex.AiEndpoint``) but has no resource
that uploads a custom model and deploys it, so ``ModelDeployment`` does it with
the Vertex AI REST API (``v1``, see ``vertex_api``), authorised by Application
Default Credentials through google-auth (``scorebus[remote]``);
google-cloud-aiplatform is not needed.

- create: ``models:upload`` (the scorebus serving image, the registry version
  folder in Cloud Storage as its artifacts), then ``deployModel`` with a traffic
  split: the new model takes ``traffic_percentage`` and the models already on
  the endpoint share the rest in their current proportions (the first model
  always takes 100).
- update: only ``traffic_percentage`` changes in place (``endpoints.patch``);
  any other change is a replacement, created before the old one is deleted, so
  the endpoint never serves nothing.
- delete: ``undeployModel`` handing its share back to the others, then the model.

The provider is pickled into the stack's state and run by Pulumi's dynamic
provider host, which must be able to import scorebus (the same virtualenv).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import pulumi
import pulumi.dynamic as dyn

from .vertex_api import (
    GoogleTransport,
    Transport,
    VertexApi,
    VertexApiError,
    split_traffic,
    without,
)


@dataclass(frozen=True, kw_only=True)
class DeploymentArgs:
    """What to deploy where. ``endpoint`` is ``projects/P/locations/R/endpoints/E``."""

    project: pulumi.Input[str]
    region: pulumi.Input[str]
    endpoint: pulumi.Input[str]
    display_name: pulumi.Input[str]
    artifact_uri: pulumi.Input[str]
    serving_image: pulumi.Input[str]
    machine_type: pulumi.Input[str] = "n1-standard-2"
    min_replicas: pulumi.Input[int] = 1
    max_replicas: pulumi.Input[int] = 1
    traffic_percentage: pulumi.Input[int] = 100


INPUTS = tuple(f.name for f in fields(DeploymentArgs))
IN_PLACE = frozenset({"traffic_percentage"})


class VertexDeploymentProvider(dyn.ResourceProvider):
    """Create, update and delete one deployed model (see the module docstring).

    Args:
        transport: builds the HTTP transport; ``GoogleTransport`` by default. The
            provider is pickled into the stack's state, so it holds a factory, not
            a session.
        sleep, poll_s, timeout_s: polling of long-running operations.
    """

    def __init__(
        self,
        transport: Callable[[], Transport] | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        poll_s: float = 10.0,
        timeout_s: float = 3600.0,
    ) -> None:
        self.transport = transport
        self.sleep, self.poll_s, self.timeout_s = sleep, poll_s, timeout_s

    def _api(self, props: Mapping[str, Any]) -> VertexApi:
        transport = (self.transport or GoogleTransport)()
        return VertexApi(
            transport,
            str(props["region"]),
            sleep=self.sleep,
            poll_s=self.poll_s,
            timeout_s=self.timeout_s,
        )

    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        api = self._api(props)
        endpoint = str(props["endpoint"])
        model = api.upload_model(
            f"projects/{props['project']}/locations/{props['region']}",
            {
                "displayName": props["display_name"],
                "artifactUri": props["artifact_uri"],
                "containerSpec": {
                    "imageUri": props["serving_image"],
                    "ports": [{"containerPort": 8080}],
                    "predictRoute": "/predict",
                    "healthRoute": "/health",
                },
            },
        )
        deployed = {
            "model": model,
            "displayName": props["display_name"],
            "dedicatedResources": {
                "machineSpec": {"machineType": props["machine_type"]},
                "minReplicaCount": int(props["min_replicas"]),
                "maxReplicaCount": int(props["max_replicas"]),
            },
        }
        # "0" stands for the model being deployed in a deployModel traffic split.
        traffic = split_traffic(api.traffic(endpoint), "0", int(props["traffic_percentage"]))
        deployed_id = api.deploy(endpoint, deployed, traffic)
        outs = {**_inputs(props), "model": model, "deployed_model_id": deployed_id}
        return dyn.CreateResult(id_=f"{endpoint}/deployedModels/{deployed_id}", outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        changed = [k for k in INPUTS if olds.get(k) != news.get(k)]
        return dyn.DiffResult(
            changes=bool(changed),
            replaces=[k for k in changed if k not in IN_PLACE],
            delete_before_replace=False,
        )

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        api = self._api(news)
        endpoint, deployed_id = str(news["endpoint"]), str(olds["deployed_model_id"])
        traffic = split_traffic(api.traffic(endpoint), deployed_id, int(news["traffic_percentage"]))
        api.set_traffic(endpoint, traffic)
        outs = {**_inputs(news), "model": olds["model"], "deployed_model_id": deployed_id}
        return dyn.UpdateResult(outs=outs)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        api = self._api(props)
        endpoint, deployed_id = str(props["endpoint"]), str(props["deployed_model_id"])
        try:
            api.undeploy(endpoint, deployed_id, without(api.traffic(endpoint), deployed_id))
        except VertexApiError as exc:
            if exc.status != 404:  # the endpoint or the deployment is gone already
                raise
        try:
            api.delete_model(str(props["model"]))
        except VertexApiError as exc:
            if exc.status != 404:
                raise


def _inputs(props: Mapping[str, Any]) -> dict[str, Any]:
    return {k: props[k] for k in INPUTS if k in props}


class ModelDeployment(dyn.Resource):
    """A registry model served from a Vertex AI endpoint (a dynamic resource).

    Outputs: ``model`` (the uploaded model's resource name) and ``deployed_model_id``.
    """

    model: pulumi.Output[str]
    deployed_model_id: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        args: DeploymentArgs,
        opts: pulumi.ResourceOptions | None = None,
        provider: VertexDeploymentProvider | None = None,
    ) -> None:
        props: dict[str, Any] = {k: getattr(args, k) for k in INPUTS}
        props.update(model=None, deployed_model_id=None)
        super().__init__(provider or VertexDeploymentProvider(), name, props, opts)
