"""Fixtures for the deploy layer: a real app with a registry model, and its graph under mocks.

``graph`` runs the ``ScorebusGcp`` component once per module under Pulumi's own
mocks (``pulumi.runtime.set_mocks``, ``@pulumi.runtime.test``): no CLI, no
network. Every registered resource is captured with its type, name, URN (which
encodes its parent) and inputs exactly as the provider would receive them, so
the policy tests read the graph the way Google's API would.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pulumi
import pytest
from pulumi.runtime.mocks import MockMonitor

PROJECT = "acme-ml"
REGION = "europe-west4"
PROJECT_NUMBER = "123456789012"
IMAGE = "europe-west4-docker.pkg.dev/acme-ml/scorebus/serve:0.1.0"

APP_SOURCE = """
import msgspec
from scorebus import App, Batch, RetryPolicy


class Txn(msgspec.Struct):
    amount: float
    hour: float


app = App("fraud")


@app.scorer(subscribe="transactions", schema=Txn, model="fraud@champion",
            batch=Batch(max_size=256, max_wait_ms=20), publish="fraud-scores",
            retry=RetryPolicy(max_attempts=7, initial_backoff_s=1, max_backoff_s=120),
            ack_deadline_s=90)
def fraud(events, scores):
    return [{"p": float(s)} for s in scores]


@app.scorer(subscribe="transactions", schema=Txn, model="fraud@champion", name="audit",
            batch=Batch(max_size=64, max_wait_ms=2500), ack_deadline_s=120,
            retry=RetryPolicy(max_attempts=3))
def audit(events, scores):
    return [{"flag": bool(s > 0.9)} for s in scores]


@app.scorer(subscribe="clicks", sink=False, publish="click-scores", ack_deadline_s=5)
def clicks(events, _):
    return [{"seen": True} for _ in events]


@app.on("model.trained")
def promote(event, ctx):
    ctx.publish("model.promoted", {"version": 1})
"""


@dataclass
class Resource:
    urn: str
    typ: str
    name: str
    inputs: dict[str, Any]
    state: dict[str, Any]


@dataclass
class Graph:
    resources: list[Resource]
    outputs: dict[str, Any]
    registered_outputs: dict[str, set[str]] = field(default_factory=dict)

    def of_type(self, typ: str) -> list[Resource]:
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ: str) -> Resource:
        found = self.of_type(typ)
        assert len(found) == 1, f"{len(found)} resources of type {typ}"
        return found[0]


class RecordingMonitor(MockMonitor):
    """The mock monitor, also recording each ``register_outputs`` (which it otherwise drops)."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registered_outputs: dict[str, set[str]] = {}

    def RegisterResourceOutputs(self, request: Any) -> Any:
        self.registered_outputs[request.urn] = set(request.outputs.fields)
        return super().RegisterResourceOutputs(request)  # type: ignore[no-untyped-call]


class GcpMocks(pulumi.runtime.Mocks):
    """Inputs become state, plus what Google computes (emails, URIs, role names, ids)."""

    def __init__(self) -> None:
        self.captured: list[tuple[str, str, dict[str, Any]]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        self.captured.append((args.typ, args.name, inputs))
        state = dict(inputs)
        state.setdefault("name", args.name)
        project = inputs.get("project", PROJECT)
        if args.typ == "gcp:serviceaccount/account:Account":
            state["email"] = f"{inputs['accountId']}@{project}.iam.gserviceaccount.com"
        elif args.typ == "gcp:cloudfunctionsv2/function:Function":
            service = f"projects/{project}/locations/{inputs['location']}/services/{inputs['name']}"
            uri = f"https://{inputs['name']}-abc123-ez.a.run.app"
            state["serviceConfig"] = {**inputs["serviceConfig"], "uri": uri, "service": service}
            state["url"] = f"https://{inputs['location']}-{project}.cloudfunctions.net/{args.name}"
        elif args.typ == "gcp:projects/iAMCustomRole:IAMCustomRole":
            state["name"] = f"projects/{project}/roles/{inputs['roleId']}"
        elif args.typ == "pulumi-python:dynamic:Resource":
            state["model"] = f"projects/{project}/locations/{REGION}/models/77"
            state["deployed_model_id"] = "4242"
        elif args.typ == "gcp:pubsub/topic:Topic":  # Google's id: the topic's path
            return f"projects/{project}/topics/{inputs['name']}", state
        return f"{args.name}-id", state

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        if args.token == "gcp:organizations/getProject:getProject":
            return {"number": PROJECT_NUMBER, "projectId": args.args.get("projectId")}, []
        raise AssertionError(f"unexpected invoke {args.token}")


@pytest.fixture(scope="session")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A folder holding the app module and a registry (``.scorebus/models``) with ``fraud@champion``.

    Yields ``(folder, "MODULE:app")``. The folder is importable for the session
    (the module name is unique); the current directory is left alone, so tests
    pass the registry explicitly or change directory themselves. Source
    archives are written under the session's temporary folder.
    """
    from sklearn.linear_model import LogisticRegression

    from scorebus.deploy import function
    from scorebus.models.registry import Registry

    root = tmp_path_factory.mktemp("app")
    module = f"sbdeploy_{uuid.uuid4().hex[:10]}"
    (root / f"{module}.py").write_text(APP_SOURCE)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2)).astype(np.float32)
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    Registry(root / ".scorebus" / "models").register(
        "fraud", model, features=["amount", "hour"], alias="champion"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "path", [str(root), *sys.path])
        mp.setattr(function, "ARCHIVE_DIR", tmp_path_factory.mktemp("archives"))
        importlib.invalidate_caches()
        yield root, f"{module}:app"
    sys.modules.pop(module, None)


def registry_of(app_dir: tuple[Path, str]) -> str:
    return str(app_dir[0] / ".scorebus" / "models")


_LOOP: asyncio.AbstractEventLoop | None = None


def run_component(args: Any, name: str = "fraud") -> Graph:
    """Build ``ScorebusGcp(name, args)`` under mocks and wait for every output.

    Pulumi's runtime works on the current event loop and leaves worker threads
    with loops of their own behind it; every run here uses one loop kept for the
    session (a test elsewhere may have left no current loop at all), never closed
    while those threads may still hold on to it.
    """
    from scorebus.deploy import ScorebusGcp

    global _LOOP
    _LOOP = _LOOP or asyncio.new_event_loop()
    asyncio.set_event_loop(_LOOP)
    try:
        mocks = GcpMocks()
        monitor = RecordingMonitor(mocks)
        pulumi.runtime.set_mocks(mocks, project="scorebus-fraud", stack="test", monitor=monitor)
        outputs: dict[str, Any] = {}

        @pulumi.runtime.test  # type: ignore[untyped-decorator]
        def build() -> pulumi.Output[Any]:
            component = ScorebusGcp(name, args)
            resolved = {k: v for k, v in component.outputs.items() if v is not None}
            return pulumi.Output.all(**resolved).apply(outputs.update)

        build()
    finally:
        asyncio.set_event_loop(None)
    registered = monitor.get_registered_resources().values()
    urns = {r.urn.rsplit("::", 1)[-1]: r.urn for r in registered}
    states = {r.urn: dict(r.state) for r in registered}
    resources = [
        Resource(urns[name_], typ, name_, inputs, states[urns[name_]])
        for typ, name_, inputs in mocks.captured
    ]
    return Graph(resources, outputs, monitor.registered_outputs)
