"""Error answers: every one a ``Problem`` (``{"detail": ...}``) a person can act on; never a 500
for a dependency that is down (storage or the queue: 503 with the reason). 401 carries
``WWW-Authenticate``, 429 ``Retry-After`` and an RFC 9457 body naming the limit, 405 ``Allow`` with
every method the path has (not only those of the first route that matched)."""
from __future__ import annotations

import logging

import urllib3
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from minio.error import S3Error
from starlette.exceptions import HTTPException as StarletteHTTPException
from fastapi.routing import iter_route_contexts
from starlette.routing import compile_path

from services.common.storage import StorageUnavailable

from ..jobs.outage import is_transient
from . import metrics
from .authentication import AuthUnavailable, NotAuthenticated
from .control import NotRetryable, QueueUnavailable
from .quotas import QuotaExceeded
from .upload import UploadRejected
from .views import Problem, QuotaProblem

log = logging.getLogger(__name__)

AUTH_ERRORS = {401: {"model": Problem, "description": "no API key (or token), or one that is unknown, revoked or "
                                                    "expired; `WWW-Authenticate` says which"}}
QUOTA_ERRORS = {429: {"model": QuotaProblem, "description": "a per-owner limit is reached (the body names it; "
                                                            "`Retry-After` says when to try again); nothing stored "
                                                            "was touched"}}
STORAGE_DOWN = {503: {"model": Problem, "description": "storage or the job queue is unavailable (the reason says "
                                                       "which); retry later"}}


def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=Problem(detail=detail).model_dump(), headers=headers)


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method some route of ``app`` answers at ``path``."""
    methods: set[str] = set()
    for route in iter_route_contexts(app.routes):
        if route.methods and route.path and compile_path(route.path)[0].match(path):
            methods |= route.methods
    return sorted(methods)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 405:
            methods = allowed_methods(app, request.url.path)
            return problem(405, f"{request.method} is not allowed here; this path answers {', '.join(methods)}",
                           {"Allow": ", ".join(methods)})
        return await http_exception_handler(request, exc)

    @app.exception_handler(NotAuthenticated)
    async def not_authenticated(_request: Request, exc: NotAuthenticated) -> JSONResponse:
        return problem(401, str(exc), {"WWW-Authenticate": exc.challenge})

    @app.exception_handler(AuthUnavailable)
    async def auth_unavailable(_request: Request, exc: AuthUnavailable) -> JSONResponse:
        return problem(503, str(exc), {"Retry-After": "5"})

    @app.exception_handler(QuotaExceeded)
    async def quota_exceeded(_request: Request, exc: QuotaExceeded) -> JSONResponse:
        metrics.QUOTA_REFUSALS.labels(exc.limit).inc()
        body = QuotaProblem(detail=exc.detail, limit=exc.limit, allowed=exc.allowed, used=exc.used,
                            retry_after_s=exc.retry_after_s)
        return JSONResponse(status_code=429, content=body.model_dump(), media_type="application/problem+json",
                            headers={"Retry-After": str(exc.retry_after_s)})

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
