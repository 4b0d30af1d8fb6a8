"""``GET /v1/models``: the 2D pose models a job may choose, as the pose2d stage reports them."""
from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from ..authentication import require_caller
from ..dependencies import ApiState, api_state
from ..pose_models import PoseModelList, PoseModelsUnavailable, list_pose_models
from ..problems import AUTH_ERRORS, problem
from ..views import API, Problem

router = APIRouter(prefix=f"{API}/models", tags=["models"], dependencies=[Depends(require_caller)],
                   responses=AUTH_ERRORS)


@router.get("", response_model=PoseModelList,
            summary="2D pose models loaded now (the job option pose_model), and known ones not loaded",
            responses={503: {"model": Problem, "description": "the pose2d stage does not answer"}})
async def list_models(api: ApiState = Depends(api_state)) -> PoseModelList | JSONResponse:
    try:
        return await list_pose_models(api.clients)
    except PoseModelsUnavailable as exc:
        return problem(503, str(exc), {"Retry-After": "5"})
