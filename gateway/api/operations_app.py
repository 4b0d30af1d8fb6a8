"""The operations port of an API replica (``HPE3D_METRICS_PORT``): what operators need and clients
must not see, on a port that no Service or Ingress routes (Prometheus scrapes the pod directly).

* ``GET /metrics``: Prometheus metrics of this replica;
* ``GET /readyz``: readiness with each part's answer or error (addresses, exception text);
* ``GET /healthz``.

It shares the API app's state (its readiness probe), so it answers 503 until that app has started.
"""
from __future__ import annotations

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .views import Readiness


def create_operations_app(api_app: FastAPI) -> FastAPI:
    ops = FastAPI(title="hpe3d operations", docs_url=None, redoc_url=None, openapi_url=None)

    @ops.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @ops.get("/readyz", response_model=Readiness)
    async def readyz() -> JSONResponse:
        api = getattr(api_app.state, "api", None)
        if api is None:
            return JSONResponse(status_code=503, content={"ready": False, "dependencies": {},
                                                          "detail": "the API has not started yet"})
        report = await api.readiness.check()
        return JSONResponse(status_code=200 if report.ready else 503, content=report.model_dump())

    @ops.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return ops
