"""OpenID Connect bearer tokens (optional): with ``HPE3D_OIDC_ISSUER`` set, a JWT from that issuer is
accepted wherever an API key is, and its subject owns the jobs (``oidc:<sub>``).

The issuer's signing keys come from its JWKS, found through its discovery document
(``<issuer>/.well-known/openid-configuration``) and cached by PyJWT's ``PyJWKClient``. A token must
carry a signature by one of those keys (asymmetric algorithms only), ``iss`` equal to the issuer,
``aud`` containing ``HPE3D_OIDC_AUDIENCE``, a ``sub`` and an ``exp`` not passed (30 s of clock skew
allowed). Blocking calls: the API runs ``verify`` in a thread.
"""
from __future__ import annotations

import json
import threading
import urllib.request

import jwt
from jwt import PyJWKClient

from .oidc_errors import InvalidToken, IssuerUnavailable

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
LEEWAY_S = 30
FETCH_TIMEOUT_S = 10


class OidcVerifier:
    def __init__(self, issuer: str, audience: str):
        if not audience:
            raise ValueError("HPE3D_OIDC_ISSUER is set but HPE3D_OIDC_AUDIENCE is not: set the audience this API's "
                             "tokens carry, so that tokens issued for other applications are refused")
        self.issuer = issuer
        self.audience = audience
        self._jwks: PyJWKClient | None = None
        self._lock = threading.Lock()

    def _client(self) -> PyJWKClient:
        with self._lock:
            if self._jwks is None:
                url = f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"
                try:
                    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as resp:  # noqa: S310 - configured URL
                        jwks_uri = json.loads(resp.read())["jwks_uri"]
                except (OSError, ValueError, KeyError) as exc:
                    raise IssuerUnavailable(f"the OpenID Connect issuer's discovery document {url} cannot be "
                                            f"read: {exc}") from exc
                self._jwks = PyJWKClient(jwks_uri, lifespan=300, timeout=FETCH_TIMEOUT_S)
            return self._jwks

    def verify(self, token: str) -> tuple[str, float]:
        """The ``sub`` and ``exp`` of a valid token; raises ``InvalidToken`` or ``IssuerUnavailable``."""
        try:
            signing_key = self._client().get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as exc:
            raise IssuerUnavailable(f"the OpenID Connect issuer's keys cannot be fetched: {exc}") from exc
        except (jwt.PyJWKClientError, jwt.DecodeError) as exc:
            raise InvalidToken(f"the token names no key of the issuer: {exc}") from exc
        try:
            claims = jwt.decode(token, signing_key.key, algorithms=ALGORITHMS, audience=self.audience,
                                issuer=self.issuer, leeway=LEEWAY_S,
                                options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"invalid token: {exc}") from exc
        return str(claims["sub"]), float(claims["exp"])
