"""``/v1/keys``: make, list and revoke API keys, with an admin key (``hpe3d keys`` calls these)."""
from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Depends, HTTPException, Response

from ..api_keys import ApiKeyRecord
from ..authentication import Caller, require_admin
from ..dependencies import ApiState, api_state
from ..problems import AUTH_ERRORS, STORAGE_DOWN
from ..views import API, KeyCreated, KeyList, KeyView, NewKey, Problem

log = logging.getLogger(__name__)

router = APIRouter(prefix=f"{API}/keys", tags=["keys"])

ADMIN_ONLY = {**AUTH_ERRORS, 403: {"model": Problem, "description": "the caller's key is not an admin key"}}


def _view(record: ApiKeyRecord) -> KeyView:
    return KeyView(id=record.id, name=record.name, admin=record.admin, created_at=record.created_at,
                   revoked_at=record.revoked_at)


@router.post("", status_code=201, response_model=KeyCreated, summary="Make an API key; the key is shown only here",
             responses={**ADMIN_ONLY, 400: {"model": Problem, "description": "a body that is not JSON"},
                        **STORAGE_DOWN})
async def create_key(body: NewKey, caller: Caller = Depends(require_admin),
                     api: ApiState = Depends(api_state)) -> KeyCreated:
    record, key = await asyncio.to_thread(api.auth.keys.create, body.name, body.admin)
    log.info("key %s made for %s%s by key %s", record.id, record.name, " (admin)" if record.admin else "",
             caller.key_id or caller.user)
    return KeyCreated(**_view(record).model_dump(), key=key)


@router.get("", response_model=KeyList, summary="Every API key (never the keys themselves)",
            responses={**ADMIN_ONLY, **STORAGE_DOWN})
async def list_keys(_caller: Caller = Depends(require_admin), api: ApiState = Depends(api_state)) -> KeyList:
    return KeyList(keys=[_view(r) for r in await asyncio.to_thread(api.auth.keys.list)])


@router.delete("/{key_id}", status_code=204, response_class=Response,
               summary="Revoke an API key: it is refused from now on, on every replica",
               responses={**ADMIN_ONLY, 404: {"model": Problem, "description": "no such key"}, **STORAGE_DOWN})
async def revoke_key(key_id: str, caller: Caller = Depends(require_admin),
                     api: ApiState = Depends(api_state)) -> Response:
    record = await asyncio.to_thread(api.auth.keys.revoke, key_id)
    if record is None:
        raise HTTPException(404, f"no key {key_id}")
    log.info("key %s (%s) revoked by key %s", record.id, record.name, caller.key_id or caller.user)
    return Response(status_code=204)
