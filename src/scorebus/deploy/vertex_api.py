"""The Vertex AI REST calls a model deployment makes, and its traffic-split arithmetic.

Plain JSON over HTTPS (``v1``) through a ``Transport`` callable: ``GoogleTransport``
signs requests with Application Default Credentials (google-auth with requests,
``scorebus[remote]``); tests pass a fake. Long-running operations (upload,
deploy, undeploy, delete) are polled until done.

A traffic split maps deployed-model ids to whole percentages summing to 100
(or is empty when nothing is deployed); in ``deployModel`` the id ``"0"`` stands
for the model being deployed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ..errors import ScorebusError


def _shares(weights: Mapping[str, float], total: int) -> dict[str, int]:
    """Whole numbers proportional to ``weights`` that add up to ``total`` (largest remainder)."""
    if not weights or total <= 0:
        return {}
    mass = sum(weights.values())
    exact = {k: total * (w / mass if mass > 0 else 1 / len(weights)) for k, w in weights.items()}
    out = {k: int(v) for k, v in exact.items()}
    by_remainder = sorted(exact, key=lambda k: (-(exact[k] - out[k]), k))
    for k in by_remainder[: total - sum(out.values())]:
        out[k] += 1
    return out


def split_traffic(current: Mapping[str, int], new_id: str, percentage: int) -> dict[str, int]:
    """The split after ``new_id`` takes ``percentage``: the others keep their proportions.

    With nothing else deployed (or nothing else taking traffic) ``new_id`` takes 100.
    """
    if not 0 <= percentage <= 100:
        raise ValueError(f"traffic percentage {percentage}: must be in 0..100")
    others = {k: float(v) for k, v in current.items() if k != new_id and v > 0}
    if not others:
        return {new_id: 100}
    split = {new_id: percentage, **_shares(others, 100 - percentage)}
    return {k: v for k, v in split.items() if v > 0 or k == new_id}


def without(current: Mapping[str, int], gone_id: str) -> dict[str, int]:
    """The split once ``gone_id`` is undeployed: its share goes to the others pro rata."""
    others = {k: float(v) for k, v in current.items() if k != gone_id}
    return _shares(others, 100)


class VertexApiError(ScorebusError):
    """The Vertex AI API answered an error (``status`` is its HTTP status, 0 for a failed operation)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class Transport(Protocol):
    def __call__(
        self, method: str, url: str, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]: ...


class GoogleTransport:
    """JSON over HTTPS with Application Default Credentials (google-auth + requests)."""

    def __init__(self, timeout_s: float = 60.0) -> None:
        try:
            import google.auth
            from google.auth.transport.requests import AuthorizedSession
        except ModuleNotFoundError as exc:
            raise ImportError(
                f"deploying to Vertex AI needs {exc.name!r}: pip install 'scorebus[remote]'"
            ) from exc
        scopes = ["https://www.googleapis.com/auth/cloud-platform"]
        credentials, _ = google.auth.default(scopes=scopes)
        self._session = AuthorizedSession(credentials)  # type: ignore[no-untyped-call]
        self._timeout_s = timeout_s

    def __call__(
        self, method: str, url: str, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        response = self._session.request(  # type: ignore[no-untyped-call]
            method, url, json=body, timeout=self._timeout_s
        )
        if response.status_code >= 400:
            raise VertexApiError(
                f"{method} {url}: {response.status_code} {response.text[:500]}",
                response.status_code,
            )
        return dict(response.json()) if response.content else {}


class VertexApi:
    """The few Vertex AI calls a deployment makes, with operations polled to the end."""

    def __init__(
        self,
        transport: Transport,
        region: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        poll_s: float = 10.0,
        timeout_s: float = 3600.0,
    ) -> None:
        self.call = transport
        self.base = f"https://{region}-aiplatform.googleapis.com/v1"
        self._sleep, self._poll_s, self._timeout_s = sleep, poll_s, timeout_s

    def wait(self, operation: dict[str, Any]) -> dict[str, Any]:
        """The ``response`` of a long-running operation once it is done."""
        waited = 0.0
        while not operation.get("done"):
            if waited >= self._timeout_s:
                raise VertexApiError(f"operation {operation.get('name')} still running")
            self._sleep(self._poll_s)
            waited += self._poll_s
            operation = self.call("GET", f"{self.base}/{operation['name']}")
        if "error" in operation:
            error = operation["error"]
            raise VertexApiError(f"operation {operation.get('name')} failed: {error}")
        return dict(operation.get("response", {}))

    def upload_model(self, parent: str, model: Mapping[str, Any]) -> str:
        done = self.wait(self.call("POST", f"{self.base}/{parent}/models:upload", {"model": model}))
        return str(done["model"])

    def traffic(self, endpoint: str) -> dict[str, int]:
        found = self.call("GET", f"{self.base}/{endpoint}")
        return {k: int(v) for k, v in found.get("trafficSplit", {}).items()}

    def deploy(self, endpoint: str, deployed: Mapping[str, Any], traffic: dict[str, int]) -> str:
        body = {"deployedModel": deployed, "trafficSplit": traffic}
        done = self.wait(self.call("POST", f"{self.base}/{endpoint}:deployModel", body))
        return str(done["deployedModel"]["id"])

    def set_traffic(self, endpoint: str, traffic: dict[str, int]) -> None:
        url = f"{self.base}/{endpoint}?updateMask=trafficSplit"
        self.call("PATCH", url, {"trafficSplit": traffic})

    def undeploy(self, endpoint: str, deployed_id: str, traffic: dict[str, int]) -> None:
        body = {"deployedModelId": deployed_id, "trafficSplit": traffic}
        self.wait(self.call("POST", f"{self.base}/{endpoint}:undeployModel", body))

    def delete_model(self, model: str) -> None:
        self.wait(self.call("DELETE", f"{self.base}/{model}"))
