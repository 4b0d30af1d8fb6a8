"""Error answers: every one a ``Problem`` (``{"detail": ...}``) a person can act on; never a 500
for a dependency that is down (storage or the queue: 503 with the reason)."""
from __future__ import annotations

import logging

import urllib3
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from minio.error import S3Error

from services.common.storage import StorageUnavailable

from ..jobs.outage import is_transient
from . import metrics
from .control import NotRetryable, QueueUnavailable
from .upload import UploadRejected
from .views import Problem

log = logging.getLogger(__name__)

STORAGE_DOWN = {503: {"model": Problem, "description": "storage or the job queue is unavailable (the reason says "
                                                       "which); retry later"}}


def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=Problem(detail=detail).model_dump(), headers=headers)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(UploadRejected)
    async def upload_rejected(_request: Request, exc: UploadRejected) -> JSONResponse:
        metrics.UPLOADS_REJECTED.labels(exc.reason).inc()
        return problem(exc.status, exc.message, {"Connection": "close"} if exc.status == 413 else None)

    @app.exception_handler(StorageUnavailable)
    @app.exception_handler(urllib3.exceptions.HTTPError)
    async def storage_down(_request: Request, exc: Exception) -> JSONResponse:
        metrics.STORAGE_UNAVAILABLE.inc()
        return problem(503, f"storage unavailable: {exc}", {"Retry-After": "5"})

    @app.exception_handler(S3Error)
    async def storage_error(_request: Request, exc: S3Error) -> JSONResponse:
        if is_transient(exc):
            metrics.STORAGE_UNAVAILABLE.inc()
            return problem(503, f"storage unavailable: {exc.code}: {exc.message}", {"Retry-After": "5"})
        log.error("storage refused a request: %s", exc)
        return problem(502, f"storage refused the request: {exc.code}: {exc.message}")

    @app.exception_handler(QueueUnavailable)
    async def queue_down(_request: Request, exc: QueueUnavailable) -> JSONResponse:
        return problem(503, str(exc), {"Retry-After": "5"})

    @app.exception_handler(NotRetryable)
    async def not_retryable(_request: Request, exc: NotRetryable) -> JSONResponse:
        return problem(409, str(exc))
