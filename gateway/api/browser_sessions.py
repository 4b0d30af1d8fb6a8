"""Sign-in sessions of the web page: what lets a browser fetch the things it cannot send a header
with (``<video>``, ``<img>``, download links, ``EventSource``) without a key in any URL.

``POST /v1/session`` with a key (or token) in a header answers with an HttpOnly, SameSite=Strict
cookie ``hpe3d_session`` holding ``<expiry>.<ticket>``: the expiry (Unix seconds) and 32 random
bytes. The store keeps ``auth/sessions/<expiry>-<sha256(ticket)>.json`` with the caller it stands for,
so every API replica honours it, a stolen bucket listing opens nothing, and expired sessions are
found by listing keys (each sign-in removes them). A session lasts ``SESSION_TTL_S`` (an OIDC one no
longer than its token), ends with its key's revocation, and opens only reads (GET and HEAD): every
change needs the key itself in a header.
"""
from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from dataclasses import asdict, dataclass

from services.common.storage import ObjectNotFound, ObjectStore

SESSIONS_PREFIX = "auth/sessions/"
SESSION_COOKIE = "hpe3d_session"
SESSION_TTL_S = 3600
_COOKIE = re.compile(r"^(\d{10})\.([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class SessionRecord:
    user: str
    admin: bool
    key_id: str  # the API key the session was opened with; "" for a token's session
    expires: int  # Unix seconds


def _object_key(expires: int, ticket: str) -> str:
    return f"{SESSIONS_PREFIX}{expires:010d}-{hashlib.sha256(ticket.encode()).hexdigest()}.json"


class SessionStore:
    """Blocking calls: the API runs them in a thread."""

    def __init__(self, store: ObjectStore):
        self.store = store

    def open(self, user: str, admin: bool, key_id: str, not_after: float | None = None) -> tuple[str, SessionRecord]:
        """A new session; returns the cookie value and the record. Removes expired sessions."""
        self.remove_expired()
        expires = int(time.time() + SESSION_TTL_S)
        if not_after is not None:
            expires = min(expires, int(not_after))
        ticket = secrets.token_urlsafe(32)
        record = SessionRecord(user=user, admin=admin, key_id=key_id, expires=expires)
        self.store.put_bytes(_object_key(expires, ticket), json.dumps(asdict(record)).encode(), "application/json")
        return f"{expires:010d}.{ticket}", record

    def find(self, cookie: str) -> SessionRecord | None:
        """The live session of a cookie value; None when it is malformed, unknown or expired."""
        m = _COOKIE.match(cookie)
        if m is None or int(m.group(1)) <= time.time():
            return None
        try:
            data = self.store.get_bytes(_object_key(int(m.group(1)), m.group(2)))
        except ObjectNotFound:
            return None
        return SessionRecord(**json.loads(data))

    def close(self, cookie: str) -> None:
        m = _COOKIE.match(cookie)
        if m is not None:
            self.store.delete(_object_key(int(m.group(1)), m.group(2)))

    def remove_expired(self) -> int:
        now = time.time()
        expired = [k for k in self.store.list_keys(SESSIONS_PREFIX)
                   if k[len(SESSIONS_PREFIX):len(SESSIONS_PREFIX) + 10].isdigit()
                   and int(k[len(SESSIONS_PREFIX):len(SESSIONS_PREFIX) + 10]) <= now]
        for key in expired:
            self.store.delete(key)
        return len(expired)
