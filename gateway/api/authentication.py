"""Who is calling: every route but ``/healthz``, ``/readyz``, the page, its assets and the API
documents needs a caller.

A caller shows one of

* an API key (``api_keys.py``) as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``;
* a JWT of the configured OpenID Connect issuer (``oidc.py``) as ``Authorization: Bearer <jwt>``;
* for reads only (GET, HEAD, a WebSocket's handshake), the page's session cookie (``browser_sessions.py``).

Without any, or with one that does not check out, the answer is 401 with ``WWW-Authenticate``.
With ``HPE3D_AUTH=off`` every caller is an admin of no name (a trusted single-user machine).

``authenticate(connection)`` works on any ``HTTPConnection``, so a WebSocket route calls it as the
HTTP routes' dependency ``require_caller`` does.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.requests import HTTPConnection

from services.common.settings import Settings
from services.common.storage import ObjectStore

from ..jobs.manifest import JobManifest
from .api_keys import ApiKeyStore, looks_like_key
from .browser_sessions import SESSION_COOKIE, SessionStore
from .oidc_errors import InvalidToken, IssuerUnavailable

log = logging.getLogger(__name__)

REALM = "hpe3d"
READ_METHODS = ("GET", "HEAD")

bearer_scheme = HTTPBearer(auto_error=False, scheme_name="bearer",
                           description="an API key (`hpe3d keys create`) or, when the server is configured for "
                                       "it, a JWT of its OpenID Connect issuer")
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="apiKey",
                              description="an API key, as an alternative to `Authorization: Bearer`")


@dataclass(frozen=True)
class Caller:
    """Who made a request: ``user`` owns the jobs they submit; an admin sees every job."""

    user: str
    admin: bool
    key_id: str = ""  # the API key used, when one was
    not_after: float | None = None  # Unix time the credential expires (a JWT's exp)

    def may_see(self, job: JobManifest) -> bool:
        return self.admin or job.user == self.user


NO_AUTH_CALLER = Caller(user="", admin=True)


class NotAuthenticated(Exception):
    """No credential, or one that does not check out: answered 401 with ``WWW-Authenticate``."""

    def __init__(self, message: str, presented: bool):
        super().__init__(message)
        self.presented = presented

    @property
    def challenge(self) -> str:
        if not self.presented:
            return f'Bearer realm="{REALM}"'
        reason = str(self).replace('"', "'")
        return f'Bearer realm="{REALM}", error="invalid_token", error_description="{reason}"'


class AuthUnavailable(Exception):
    """A credential cannot be checked now (the OIDC issuer cannot be reached): answered 503."""


class Authenticator:
    def __init__(self, settings: Settings, store: ObjectStore):
        self.enabled = settings.auth
        self.keys = ApiKeyStore(store)
        self.sessions = SessionStore(store)
        self.oidc = None
        if settings.oidc_issuer:
            from .oidc import OidcVerifier  # PyJWT is needed only with an issuer
            self.oidc = OidcVerifier(settings.oidc_issuer, settings.oidc_audience)
        if not self.enabled:
            log.warning("AUTHENTICATION IS OFF (HPE3D_AUTH=off): anyone who reaches this API sees, downloads and "
                        "deletes every job; use this only on a trusted single-user machine")

    async def caller(self, connection: HTTPConnection) -> Caller:
        if not self.enabled:
            return NO_AUTH_CALLER
        credential = _header_credential(connection)
        if credential:
            return await self.caller_of_credential(credential)
        cookie = connection.cookies.get(SESSION_COOKIE)
        method = connection.scope.get("method", "GET") if connection.scope["type"] == "http" else "GET"
        if cookie and method in READ_METHODS:
            session = await asyncio.to_thread(self.sessions.find, cookie)
            if session is None:
                raise NotAuthenticated("the sign-in session has expired; sign in again", presented=True)
            if session.key_id:
                record = await asyncio.to_thread(self.keys.get, session.key_id)
                if record is None or record.revoked:
                    raise NotAuthenticated("the key of this sign-in session was revoked", presented=True)
            return Caller(user=session.user, admin=session.admin, key_id=session.key_id)
        raise NotAuthenticated("send an API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                               presented=False)

    async def caller_of_credential(self, credential: str) -> Caller:
        """The caller a key or token stands for; raises ``NotAuthenticated`` or ``AuthUnavailable``."""
        if looks_like_key(credential):
            record = await asyncio.to_thread(self.keys.verify, credential)
            if record is None:
                raise NotAuthenticated("unknown or revoked API key", presented=True)
            return Caller(user=record.user, admin=record.admin, key_id=record.id)
        if self.oidc is None:
            raise NotAuthenticated("not an API key of this server", presented=True)
        try:
            subject, expiry = await asyncio.to_thread(self.oidc.verify, credential)
        except InvalidToken as exc:
            raise NotAuthenticated(str(exc), presented=True) from None
        except IssuerUnavailable as exc:
            raise AuthUnavailable(str(exc)) from exc
        return Caller(user=f"oidc:{subject}", admin=False, not_after=expiry)


def _header_credential(connection: HTTPConnection) -> str:
    scheme, _, value = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return connection.headers.get("x-api-key", "").strip()


def authenticator(connection: HTTPConnection) -> Authenticator:
    return connection.app.state.api.auth


async def authenticate(connection: HTTPConnection) -> Caller:
    """The caller of a request or WebSocket; raises ``NotAuthenticated`` (401) or ``AuthUnavailable``.
    Exception handlers do not answer for a WebSocket: its route closes it (code 1008) on either."""
    return await authenticator(connection).caller(connection)


async def require_caller(request: Request, _bearer=Security(bearer_scheme), _key=Security(api_key_scheme)) -> Caller:
    """The dependency of every route that needs a caller (the security schemes are for the docs)."""
    return await authenticate(request)


async def require_admin(caller: Caller = Depends(require_caller)) -> Caller:
    if not caller.admin:
        raise HTTPException(403, "this needs an admin key")
    return caller
