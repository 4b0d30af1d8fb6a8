"""``/v1/session``: who the caller is, and the web page's sign-in session (``browser_sessions.py``)."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from fastapi import APIRouter, Depends, Request, Response

from ..authentication import Caller, authenticator, require_caller
from ..browser_sessions import SESSION_COOKIE
from ..dependencies import ApiState, api_state
from ..problems import AUTH_ERRORS, STORAGE_DOWN
from ..views import API, Whoami

router = APIRouter(prefix=f"{API}/session", tags=["session"])


def _whoami(caller: Caller, api: ApiState, expires: int | None = None) -> Whoami:
    return Whoami(user=caller.user, admin=caller.admin, auth=api.settings.auth,
                  session_expires_at=datetime.fromtimestamp(expires, tz=timezone.utc) if expires else None,
                  retention_days=api.settings.retention_days)


@router.get("", response_model=Whoami, summary="Who the caller is", responses={**AUTH_ERRORS, **STORAGE_DOWN})
async def whoami(caller: Caller = Depends(require_caller), api: ApiState = Depends(api_state)) -> Whoami:
    return _whoami(caller, api)


@router.post("", response_model=Whoami, responses={**AUTH_ERRORS, **STORAGE_DOWN},
             summary="Sign the web page in: a short-lived HttpOnly cookie that opens reads (GET) for media, "
                     "downloads and event streams; changes still need the key in a header")
async def sign_in(request: Request, response: Response, caller: Caller = Depends(require_caller),
                  api: ApiState = Depends(api_state)) -> Whoami:
    if not api.settings.auth:
        return _whoami(caller, api)
    cookie, record = await asyncio.to_thread(authenticator(request).sessions.open, caller.user, caller.admin,
                                             caller.key_id, caller.not_after)
    secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
    response.set_cookie(SESSION_COOKIE, cookie, max_age=max(0, int(record.expires - datetime.now().timestamp())),
                        path="/", httponly=True, samesite="strict", secure=secure)
    return _whoami(caller, api, record.expires)


@router.delete("", status_code=204, response_class=Response, summary="Sign the web page out (ends its session)",
               responses=STORAGE_DOWN)
async def sign_out(request: Request) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        await asyncio.to_thread(authenticator(request).sessions.close, cookie)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
