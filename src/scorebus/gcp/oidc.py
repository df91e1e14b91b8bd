"""Verify the OIDC token Pub/Sub attaches to authenticated push requests.

Checks what Google documents for push authentication: the RS256 signature
against Google's published keys, the audience (the push endpoint's URL unless
configured otherwise), the issuer, the push service account's email and
``email_verified``, and the expiry. Any failure is an :class:`AuthError` whose
message says which check failed (the caller answers 401/403 with it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jwt

GOOGLE_JWKS = "https://www.googleapis.com/oauth2/v3/certs"
ISSUERS = ("https://accounts.google.com", "accounts.google.com")


class AuthError(Exception):
    """The request is not from the configured push identity."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class OidcVerifier:
    """Args:
    audience: the ``aud`` the subscription was configured with.
    service_account: the push identity's email.
    jwks_url: where the signing keys are published (Google's by default).
    leeway_s: clock skew allowed on ``exp``/``iat``.
    """

    audience: str
    service_account: str
    jwks_url: str = GOOGLE_JWKS
    leeway_s: float = 30.0
    _client: Any = field(default=None, init=False, repr=False)

    def verify(self, authorization: str | None) -> dict[str, Any]:
        """The token's claims if it passes every check.

        Raises:
            AuthError: missing, malformed, expired, wrong audience/issuer/account.
        """
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthError("missing bearer token (configure the push subscription's OIDC auth)")
        token = authorization.removeprefix("Bearer ").strip()
        if self._client is None:
            self._client = jwt.PyJWKClient(self.jwks_url, cache_keys=True)
        try:
            key = self._client.get_signing_key_from_jwt(token).key
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self.audience,
                leeway=self.leeway_s,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError(f"token audience is not {self.audience!r}", 403) from exc
        except (jwt.PyJWKClientError, jwt.InvalidTokenError) as exc:
            raise AuthError(f"invalid token: {exc}") from exc
        if claims.get("iss") not in ISSUERS:
            raise AuthError(f"token issuer {claims.get('iss')!r} is not Google", 403)
        if claims.get("email") != self.service_account:
            raise AuthError(f"token is for {claims.get('email')!r}, not the push identity", 403)
        if claims.get("email_verified") is not True:
            raise AuthError("token email is not verified", 403)
        return claims
