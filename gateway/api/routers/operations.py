"""Health and readiness of an API replica, as anyone who reaches the API may see them: no address,
no error text (operators get those, and the metrics, on the operations port: ``operations_app``)."""
from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from ..dependencies import ApiState, api_state
from ..views import PublicReadiness

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=PublicReadiness,
            summary="Storage, the job queue, every stage and Triton's models ready (503 names the parts that are "
                    "not; the reasons are on the operations port)",
            responses={503: {"model": PublicReadiness}})
async def readyz(api: ApiState = Depends(api_state)) -> JSONResponse:
    report = await api.readiness.check()
    return JSONResponse(status_code=200 if report.ready else 503, content=report.public().model_dump())
