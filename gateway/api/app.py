"""The REST API: jobs in, progress out (SSE), artefacts back; the only thing clients see.

``create_app(settings, store)`` builds the FastAPI app. A replica holds no job state: manifests in
storage are the state and NATS carries job runs, progress and cancellations, so any number of
replicas serve any job. The NATS connection, the gRPC channels and the readiness probe belong to
the app (created in its lifespan), never to the module.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.common.settings import Settings
from services.common.storage import ObjectStore

from .dependencies import ApiState
from .problems import install_problem_handlers
from .routers import jobs, keys, lifter_weights, live, models, operations, session
from .views import API
from .web import install_web


def create_app(settings: Settings, store: ObjectStore | None = None) -> FastAPI:
    store = store or ObjectStore.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        api = ApiState.build(settings, store)
        app.state.api = api
        try:
            yield
        finally:
            await api.close()

    app = FastAPI(title="hpe3d", version="2.0",
                  description=("Monocular video or a photo in; 2D keypoints, 3D poses in a shared world frame, "
                               "joint angles, exports and a rendered video out. Jobs run on workers; any replica "
                               "of this API answers for any job. Every route but /healthz and /readyz needs an API key "
                               "(`Authorization: Bearer <key>` or `X-API-Key`), or a JWT of the configured OpenID "
                               "Connect issuer; a caller sees only their own jobs (another's answer 404). Live: a "
                               "WebSocket at /v1/live takes camera frames and answers 2D, 3D and joint angles per "
                               "frame (GET /v1/live describes it)."),
                  lifespan=lifespan, docs_url=None, redoc_url=None)  # offline /docs, /redoc: web.py
    install_problem_handlers(app)
    app.include_router(jobs.router)
    app.include_router(operations.router)
    app.include_router(models.router)
    app.include_router(lifter_weights.router)
    app.include_router(live.router)
    app.include_router(session.router)
    app.include_router(keys.router)
    install_web(app, settings, API)
    return app
