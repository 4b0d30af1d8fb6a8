"""Health, readiness and metrics of an API replica. Health and readiness answer anyone (probes);
metrics need an admin key here (Prometheus scrapes them unauthenticated on HPE3D_METRICS_PORT,
a port of the cluster network only, when that is set)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..authentication import require_admin
from ..dependencies import ApiState, api_state
from ..problems import AUTH_ERRORS
from ..views import Problem, Readiness

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


@router.get("/metrics", summary="Prometheus metrics (an admin key)", response_class=Response,
            dependencies=[Depends(require_admin)],
            responses={**AUTH_ERRORS, 403: {"model": Problem, "description": "the caller's key is not an admin key"}})
async def prometheus_metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
