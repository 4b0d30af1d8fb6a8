"""The REST gateway: jobs in, progress out (SSE), artefacts back; the only thing clients see.

``create_app(settings, store)`` builds the FastAPI app; ``python -m gateway.app --host H --port P``
serves it with uvicorn. The gRPC channels, the job tasks and the event hub belong to the app
(created in its lifespan), never to the module.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.common.logs import configure_logging
from services.common.settings import Settings
from services.common.storage import ObjectNotFound, ObjectStore

from . import metrics
from .events import EventHub, done_event, progress_event
from .jobs import JobService
from .journal import JobJournal
from .manifest import JobManifest, JobState, is_job_id, new_job_id, safe_filename
from .pipeline import JobFailed, JobPipeline
from .ranges import RangeNotSatisfiable, parse_range
from .readiness import ReadinessProbe
from .stages import StageClients
from .upload import UploadRejected, receive_upload
from .views import API, JobList, JobView, Problem, Readiness
from .web import install_web

log = logging.getLogger(__name__)
SSE_KEEPALIVE_S = 15.0
SSE_POLL_S = 1.0

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {
                "file": {"type": "string", "format": "binary", "description": (
                    "the video (MP4, MOV, WebM, ...) or a photo (JPEG, PNG, WebP: an image job)")},
                "max_persons": {"type": "integer", "minimum": 0, "description": "0 = server default"},
                "working_size": {"type": "integer", "minimum": 0, "description": "0 = server default"},
                "render": {"type": "boolean", "default": True, "description": "encode the rendered MP4"},
            }}}},
    }
}


class Gateway:
    """What one app instance owns; built in the lifespan, inside the event loop."""

    def __init__(self, settings: Settings, store: ObjectStore):
        self.settings = settings
        self.store = store
        self.hub = EventHub()
        self.clients = StageClients.from_settings(settings)
        self.journal = JobJournal(store, self.hub)
        self.pipeline = JobPipeline(settings, store, self.clients, self.journal)
        self.jobs = JobService(store, self.journal, self.pipeline)
        self.readiness = ReadinessProbe(store, self.clients)

    async def close(self) -> None:
        await self.jobs.shutdown()
        await self.clients.close()


def _problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=Problem(detail=detail).model_dump(), headers=headers)


def create_app(settings: Settings, store: ObjectStore | None = None) -> FastAPI:
    store = store or ObjectStore.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gateway = Gateway(settings, store)
        app.state.gateway = gateway
        resume = asyncio.create_task(_resume(gateway))
        try:
            yield
        finally:
            resume.cancel()
            await gateway.close()

    app = FastAPI(title="hpe3d gateway", version="1.0",
                  description="Monocular video in; 2D keypoints, 3D poses, exports and a rendered video out.",
                  lifespan=lifespan, docs_url=None, redoc_url=None)  # offline /docs, /redoc: web.py

    def gw(request: Request) -> Gateway:
        return request.app.state.gateway

    async def job_or_404(request: Request, job_id: str) -> JobManifest:
        job = await gw(request).jobs.get(job_id) if is_job_id(job_id) else None
        if job is None:
            raise HTTPException(404, f"no job {job_id}")
        return job

    @app.exception_handler(UploadRejected)
    async def upload_rejected(_request: Request, exc: UploadRejected) -> JSONResponse:
        metrics.UPLOADS_REJECTED.labels(exc.reason).inc()
        return _problem(exc.status, exc.message, {"Connection": "close"} if exc.status == 413 else None)

    @app.post(f"{API}/jobs", status_code=202, response_model=JobView, tags=["jobs"],
              summary="Submit a video; the job runs in the background",
              responses={413: {"model": Problem, "description": "upload over HPE3D_MAX_UPLOAD_MB"},
                         422: {"model": Problem, "description": (
                             "empty upload, invalid options, a file that is not a video or photo, a truncated file whose "
                             "index is missing, or a video over "
                             "HPE3D_MAX_DURATION_S; for the last two the job exists, failed with the reason, "
                             "and the body also carries it as `job`")}},
              openapi_extra=UPLOAD_BODY)
    async def submit_job(request: Request, response: Response) -> JobView:
        limit = settings.max_upload_mb * 1024 * 1024
        upload = await receive_upload(request, limit)
        job_id = new_job_id()
        name = safe_filename(upload.filename)
        key = f"jobs/{job_id}/input/{name}"
        try:
            size = await asyncio.to_thread(store.put_stream, key, upload.file.file, upload.content_type)
        finally:
            await upload.file.close()
        metrics.UPLOAD_BYTES.inc(size)
        job = JobManifest(id=job_id, options=upload.options, input_key=key, input_name=name, input_bytes=size)
        gateway = gw(request)
        await gateway.journal.save(job, "", "queued")
        response.headers["Location"] = f"{API}/jobs/{job_id}"
        try:
            info = await gateway.pipeline.admit(job)
        except JobFailed as failed:
            return JSONResponse(status_code=422, headers={"Location": f"{API}/jobs/{job_id}"},
                                content={"detail": failed.error.message,
                                         "job": JobView.of(job).model_dump(mode="json")})
        gateway.jobs.start(job, info)
        return JobView.of(job)

    @app.get(f"{API}/jobs", response_model=JobList, tags=["jobs"], summary="List recent jobs, newest first")
    async def list_jobs(request: Request, limit: int = Query(50, ge=1, le=500)) -> JobList:
        return JobList(jobs=[JobView.of(j) for j in await gw(request).jobs.list(limit)])

    @app.get(f"{API}/jobs/{{job_id}}", response_model=JobView, tags=["jobs"],
             summary="A job's state, per-stage progress, error, video facts and artefact links",
             responses={404: {"model": Problem}})
    async def get_job(request: Request, job_id: str) -> JobView:
        return JobView.of(await job_or_404(request, job_id))

    @app.get(f"{API}/jobs/{{job_id}}/events", tags=["jobs"], response_class=StreamingResponse,
             summary="Progress as Server-Sent Events (event: progress ..., then event: done)",
             responses={200: {"content": {"text/event-stream": {}}}, 404: {"model": Problem}})
    async def job_events(request: Request, job_id: str) -> StreamingResponse:
        await job_or_404(request, job_id)
        gateway = gw(request)
        stream = _live_events(gateway, job_id) if gateway.jobs.is_running_here(job_id) else _polled_events(gateway, job_id)
        return StreamingResponse(stream, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get(f"{API}/jobs/{{job_id}}/artifacts/{{name}}", tags=["jobs"], response_class=StreamingResponse,
             summary="Download an artefact; supports Range requests (seekable MP4)",
             responses={206: {"description": "the requested byte range"}, 404: {"model": Problem},
                        416: {"model": Problem}})
    async def get_artifact(request: Request, job_id: str, name: str,
                           range_header: str | None = Header(None, alias="range")) -> Response:
        job = await job_or_404(request, job_id)
        artifact = job.artifacts.get(name)
        if artifact is None:
            raise HTTPException(404, f"job {job_id} has no artefact {name!r}")
        try:
            size = await asyncio.to_thread(store.size, artifact.key)
        except ObjectNotFound:
            raise HTTPException(404, f"artefact {name!r} is gone from storage") from None
        try:
            wanted = parse_range(range_header, size)
        except RangeNotSatisfiable as exc:
            return _problem(416, str(exc), {"Content-Range": f"bytes */{size}"})
        headers = {"Accept-Ranges": "bytes", "Content-Disposition": f'inline; filename="{name}"'}
        if size == 0:
            return Response(b"", media_type=artifact.content_type, headers=headers)
        if wanted is None:
            headers["Content-Length"] = str(size)
            return StreamingResponse(store.get_range(artifact.key, 0, size), media_type=artifact.content_type,
                                     headers=headers)
        headers["Content-Length"] = str(wanted.length)
        headers["Content-Range"] = wanted.content_range(size)
        return StreamingResponse(store.get_range(artifact.key, wanted.start, wanted.length), status_code=206,
                                 media_type=artifact.content_type, headers=headers)

    @app.delete(f"{API}/jobs/{{job_id}}", status_code=204, tags=["jobs"],
                summary="Cancel a job (no further stage calls) and delete all its objects",
                responses={404: {"model": Problem}})
    async def delete_job(request: Request, job_id: str) -> Response:
        if not is_job_id(job_id) or not await gw(request).jobs.delete(job_id):
            raise HTTPException(404, f"no job {job_id}")
        return Response(status_code=204)

    @app.get("/healthz", tags=["operations"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", response_model=Readiness, tags=["operations"],
             summary="Storage reachable and every stage SERVING (503 names what is down)",
             responses={503: {"model": Readiness}})
    async def readyz(request: Request) -> JSONResponse:
        report = await gw(request).readiness.check()
        return JSONResponse(status_code=200 if report.ready else 503, content=report.model_dump())

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    install_web(app, settings, API)
    return app


async def _resume(gateway: Gateway) -> None:
    try:
        resumed = await gateway.jobs.resume_unfinished()
        if resumed:
            log.info("resumed %d unfinished jobs", len(resumed))
    except Exception:  # noqa: BLE001 - storage down at start-up: /readyz says so, jobs resume next start
        log.exception("could not resume unfinished jobs")


async def _live_events(gateway: Gateway, job_id: str) -> AsyncIterator[str]:
    """Events of a job running in this process, pushed by the pipeline as they happen."""
    queue = gateway.hub.subscribe(job_id)
    try:
        current = await gateway.jobs.get(job_id)
        if current is None:
            yield f"event: done\ndata: {{\"job_id\": \"{job_id}\", \"state\": \"cancelled\"}}\n\n"
            return
        yield progress_event(current).sse()
        if current.state.finished:
            yield done_event(current).sse()
            return
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), SSE_KEEPALIVE_S)
            except asyncio.TimeoutError:
                yield ": keep-alive\n\n"
                continue
            yield event.sse()
            if event.name == "done":
                return
    finally:
        gateway.hub.unsubscribe(job_id, queue)


async def _polled_events(gateway: Gateway, job_id: str) -> AsyncIterator[str]:
    """Events of a finished job, or of one another gateway replica runs: read from its manifest."""
    last_update = None
    while True:
        job = await gateway.journal.load(job_id)
        if job is None:
            yield f"event: done\ndata: {{\"job_id\": \"{job_id}\", \"state\": \"{JobState.cancelled.value}\"}}\n\n"
            return
        if job.updated_at != last_update:
            last_update = job.updated_at
            yield progress_event(job).sse()
        if job.state.finished:
            yield done_event(job).sse()
            return
        await asyncio.sleep(SSE_POLL_S)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway.app", description="Serve the hpe3d REST gateway.")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    configure_logging("gateway", settings.log_level)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_config=None,
                timeout_graceful_shutdown=30)


if __name__ == "__main__":
    main()
