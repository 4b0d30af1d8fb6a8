"""Health, readiness and metrics of an API replica."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..dependencies import ApiState, api_state
from ..views import Readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness,
            summary="Storage, the job queue, every stage and Triton's models ready (503 names what is not)",
            responses={503: {"model": Readiness}})
async def readyz(api: ApiState = Depends(api_state)) -> JSONResponse:
    report = await api.readiness.check()
    return JSONResponse(status_code=200 if report.ready else 503, content=report.model_dump())


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def prometheus_metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
