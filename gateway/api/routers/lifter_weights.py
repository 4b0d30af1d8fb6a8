"""``/v1/lifter-weights``: the 3D lifter weights a job may choose (option ``lifter_weights``): list the shipped ones
and the caller's own, read one, upload the caller's (e.g. from ``hpe3d adapt``), delete the caller's."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from services.common.lifter_weights import MAX_CARD_BYTES, MAX_WEIGHTS_BYTES, NAME_PATTERN, SHIPPED

from ..authentication import Caller, require_caller
from ..dependencies import ApiState, api_state
from ..lifter_weights import (LifterWeightsList, LifterWeightsView, delete_lifter_weights, lifter_weights_view,
                              list_lifter_weights, store_lifter_weights)
from ..problems import AUTH_ERRORS, QUOTA_ERRORS, STORAGE_DOWN, problem
from ..upload import UploadRejected, read_multipart
from ..views import API, Problem

router = APIRouter(prefix=f"{API}/lifter-weights", tags=["lifter-weights"], responses=AUTH_ERRORS)


async def _read_limited(upload: UploadFile, limit: int, what: str) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise UploadRejected(413, f"{what} larger than the limit of {limit // 1024} KiB", "too_large")
    return data


@router.get("", response_model=LifterWeightsList, responses=STORAGE_DOWN,
            summary="Lifter weights a job may choose: the shipped ones and the caller's own, with their cards' "
                    "summaries")
async def list_weights(caller: Caller = Depends(require_caller),
                       api: ApiState = Depends(api_state)) -> LifterWeightsList:
    return await list_lifter_weights(api.store, caller.user)


@router.get("/{name}", response_model=LifterWeightsView,
            responses={404: {"model": Problem, "description": "no such weights, or another caller's"},
                       **STORAGE_DOWN},
            summary="One weights entry; the caller's own come with their whole model card")
async def read_weights(name: str, caller: Caller = Depends(require_caller),
                       api: ApiState = Depends(api_state)) -> LifterWeightsView | JSONResponse:
    view = await lifter_weights_view(api.store, caller.user, name)
    if view is None:
        return problem(404, f"no lifter weights named {name!r} (GET {API}/lifter-weights lists yours)")
    return view


# The form, described here because the route reads it itself (every refusal is then a problem body).
WEIGHTS_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["name", "weights"],
            "properties": {
                "name": {"type": "string", "pattern": NAME_PATTERN,
                         "description": "the name jobs use in lifter_weights"},
                "weights": {"type": "string", "format": "binary",
                            "description": "the weights (.pt, torch.save format)"},
                "card": {"type": "string", "format": "binary", "description": (
                    "the model card (Markdown), e.g. the <stem>.card.md hpe3d adapt writes")},
            }}}},
    }
}


@router.post("", status_code=201, response_model=LifterWeightsView,
             responses={400: {"model": Problem, "description": "a multipart body that cannot be read"},
                        409: {"model": Problem, "description": "the name of shipped weights"},
                        413: {"model": Problem, "description": (
                            f"weights over {MAX_WEIGHTS_BYTES // (1024 * 1024)} MB or a card over "
                            f"{MAX_CARD_BYTES // 1024} KiB")},
                        415: {"model": Problem, "description": "the body is not multipart/form-data"},
                        422: {"model": Problem, "description": "no name or no weights, a bad name, or a file that "
                                                               "is not a PyTorch checkpoint"},
                        **QUOTA_ERRORS, **STORAGE_DOWN},
             summary="Upload the caller's lifter weights (a GAST-Net checkpoint, e.g. from hpe3d adapt) and their "
                     "model card; an earlier upload of the same name is replaced",
             openapi_extra=WEIGHTS_BODY)
async def upload_weights(request: Request, caller: Caller = Depends(require_caller),
                         api: ApiState = Depends(api_state)) -> LifterWeightsView | JSONResponse:
    form = await read_multipart(request, MAX_WEIGHTS_BYTES + MAX_CARD_BYTES,
                                "send the weights as multipart/form-data with 'name' and 'weights' fields",
                                max_files=2, max_fields=32)  # other fields are ignored
    name, weights, card = form.get("name"), form.get("weights"), form.get("card")
    if not isinstance(name, str) or not isinstance(weights, UploadFile):
        return problem(422, "the form needs a 'name' field and a 'weights' file (and may have a 'card' file)")
    await api.quotas.check_lifter_weights(caller, name)
    data = await _read_limited(weights, MAX_WEIGHTS_BYTES, "weights")
    if isinstance(card, UploadFile):
        card_bytes = await _read_limited(card, MAX_CARD_BYTES, "model card")
    else:  # a card sent as a text field, or none
        card_bytes = (card or "").encode()
        if len(card_bytes) > MAX_CARD_BYTES:
            raise UploadRejected(413, f"model card larger than the limit of {MAX_CARD_BYTES // 1024} KiB", "too_large")
    return await store_lifter_weights(api.store, caller.user, name, data, card_bytes)


@router.delete("/{name}", status_code=204, response_class=Response,
               responses={404: {"model": Problem, "description": "no such weights, or another caller's"},
                          409: {"model": Problem, "description": "shipped weights, which no caller can delete"},
                          **STORAGE_DOWN},
               summary="Delete the caller's own weights and their model card (jobs already queued with them then "
                       "fail at the lift, naming the weights)")
async def delete_weights(name: str, caller: Caller = Depends(require_caller),
                         api: ApiState = Depends(api_state)) -> Response:
    if name in SHIPPED:
        return problem(409, f"{name!r} are shipped weights; only uploaded ones can be deleted")
    if not await delete_lifter_weights(api.store, caller.user, name):
        return problem(404, f"no lifter weights of yours named {name!r} (GET {API}/lifter-weights lists yours)")
    return Response(status_code=204)
