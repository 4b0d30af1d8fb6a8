"""What checking an OpenID Connect token can end in, apart from a caller (``oidc.py``); kept apart so
that the API imports PyJWT only when an issuer is configured."""
from __future__ import annotations


class InvalidToken(Exception):
    """The token is not one this API accepts; the message says why (safe to show the caller)."""


class IssuerUnavailable(Exception):
    """The issuer's discovery document or keys cannot be fetched (answered 503)."""
