"""Google credentials for Vertex AI: Application Default Credentials, bearer tokens, refresh.

google-auth refreshes a token when it is about to expire; the lock makes the
executor's threads share one refresh instead of racing. A loopback endpoint
(a local model server) gets no credentials unless they are given.
"""

from __future__ import annotations

import ipaddress
import threading
from typing import Any, Protocol
from urllib.parse import urlsplit

from ...errors import ConfigError, ModelUnavailable

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


class Credentials(Protocol):
    """What scorebus needs of a ``google.auth.credentials.Credentials``."""

    def before_request(self, request: Any, method: str, url: str, headers: Any) -> None: ...

    def refresh(self, request: Any) -> None: ...


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine (then no credentials are sent by default).

    Args:
        url: An absolute URL.

    Returns:
        ``True`` for ``localhost`` and loopback addresses.
    """
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BearerAuth:
    """Authorization headers from google-auth credentials, safe across threads.

    Args:
        credentials: Credentials to use; default ``google.auth.default()``.
        label: Names the model in messages.

    Raises:
        ImportError: google-auth (with requests) is not installed.
        ConfigError: No credentials given and no Application Default Credentials.
    """

    def __init__(self, credentials: Credentials | None, label: str) -> None:
        try:
            import google.auth.exceptions
            from google.auth.transport.requests import Request
        except ImportError as exc:
            raise ImportError(
                "VertexModel needs google-auth and requests: pip install 'scorebus[remote]'"
            ) from exc
        self._errors = google.auth.exceptions.GoogleAuthError
        self.credentials = credentials if credentials is not None else _default()
        self.label = label
        self._request = Request()
        self._lock = threading.Lock()

    def __call__(self, url: str, force_refresh: bool) -> dict[str, str]:
        """Headers for a request to ``url``; a fresh token after a 401.

        Raises:
            ModelUnavailable: No token could be had (metadata server down, revoked key).
        """
        headers: dict[str, str] = {}
        with self._lock:
            try:
                if force_refresh:
                    self.credentials.refresh(self._request)
                self.credentials.before_request(self._request, "POST", url, headers)
            except self._errors as exc:
                raise ModelUnavailable(f"{self.label}: cannot get a token: {exc}") from exc
        return headers


def _default() -> Credentials:
    import google.auth
    import google.auth.exceptions

    try:
        credentials, _ = google.auth.default(scopes=SCOPES)
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise ConfigError(
            f"no Google credentials for Vertex AI ({exc}); run "
            "`gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS"
        ) from exc
    return credentials
