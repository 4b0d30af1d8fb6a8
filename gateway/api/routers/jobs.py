"""``/v1/jobs``: submit, list, read, follow, download, retry and delete jobs."""
from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from services.common.storage import ObjectChanged, ObjectNotFound

from ...jobs.job_errors import JobFailed
from ...jobs.job_index import CURSOR
from ...jobs.manifest import JobManifest, JobState, input_key, new_job_id, safe_filename
from .. import metrics
from ..authentication import Caller, require_caller
from ..dependencies import ApiState, api_state, job_or_404
from ..lifter_weights import check_lifter_weights
from ..pose_models import check_pose_model
from ..problems import AUTH_ERRORS, QUOTA_ERRORS, STORAGE_DOWN, problem
from ..ranges import RangeNotSatisfiable, parse_range
from ..sse import job_event_stream
from ..submission import start_job
from ..upload import UPLOAD_BODY, receive_upload
from ..views import API, JobList, JobView, Problem, UploadRefused

router = APIRouter(prefix=f"{API}/jobs", tags=["jobs"], responses=AUTH_ERRORS)

NOT_FOUND = {404: {"model": Problem, "description": "no such job (or artefact), or a job of another owner"}}


@router.post("", status_code=202, response_model=JobView,
             summary="Submit a video or photo; a worker runs the job",
             responses={
                 400: {"model": Problem, "description": "a multipart body that cannot be read"},
                 413: {"model": Problem, "description": "upload over HPE3D_MAX_UPLOAD_MB"},
                 415: {"model": Problem, "description": "the body is not multipart/form-data"},
                 422: {"model": UploadRefused, "description": (
                     "no file, an empty upload or invalid options (a pose_model that is not loaded now, or lifter_weights the caller "
                     "cannot use, included); "
                     "or a file that is not a video or photo, a truncated file whose index is missing, or a video "
                     "over HPE3D_MAX_DURATION_S: for these the job exists, failed with the reason, and the body "
                     "carries it as `job`")},
                 **QUOTA_ERRORS, **STORAGE_DOWN},
             openapi_extra=UPLOAD_BODY)
async def submit_job(request: Request, response: Response, caller: Caller = Depends(require_caller),
                     api: ApiState = Depends(api_state)) -> JobView:
    api.control.require_queue()
    await api.quotas.check_jobs_in_flight(caller)
    await api.quotas.check_uploads_per_hour(caller)
    await api.quotas.check_stored_bytes(caller)
    upload = await receive_upload(request, api.settings.max_upload_mb * 1024 * 1024)
    await check_pose_model(upload.options.pose_model, api.clients)
    await check_lifter_weights(api.store, caller.user, upload.options.lifter_weights)
    job_id = new_job_id()
    name = safe_filename(upload.filename)
    key = input_key(job_id, name)
    try:
        size = await asyncio.to_thread(api.store.put_stream, key, upload.file.file, upload.content_type)
    finally:
        await upload.file.close()
    try:
        await api.quotas.check_stored_bytes(caller, adding=size)
    except Exception:
        await api.manifests.delete_objects(job_id)
        raise
    await api.quotas.record_upload(caller)
    metrics.UPLOAD_BYTES.inc(size)
    job = JobManifest(id=job_id, options=upload.options, input_key=key, input_name=name, input_bytes=size,
                      user=caller.user)
    location = f"{API}/jobs/{job_id}"
    try:
        await start_job(api, job)
    except JobFailed as failed:
        return JSONResponse(status_code=422, headers={"Location": location}, content=UploadRefused(
            detail=failed.error.message, job=JobView.of(job, api.settings.retention_days)).model_dump(mode="json"))
    response.headers["Location"] = location
    return JobView.of(job, api.settings.retention_days)


@router.get("", response_model=JobList, summary="The caller's jobs, newest first, a page at a time (an admin's: "
                                                "everybody's)",
            responses=STORAGE_DOWN)
async def list_jobs(limit: int = Query(50, ge=1, le=500, description="most jobs in this page"),
                    cursor: str = Query("", pattern=CURSOR.pattern + "|^$", max_length=46,
                                        description="next_cursor of the previous page; empty for the first page"),
                    caller: Caller = Depends(require_caller), api: ApiState = Depends(api_state)) -> JobList:
    jobs, next_cursor = await api.manifests.load_page(None if caller.admin else caller.user, limit, cursor)
    return JobList(jobs=[JobView.of(j, api.settings.retention_days) for j in jobs], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobView,
            summary="A job's state, per-stage progress, error, warnings, video facts and artefact links",
            responses={**NOT_FOUND, **STORAGE_DOWN})
async def get_job(job: JobManifest = Depends(job_or_404), api: ApiState = Depends(api_state)) -> JobView:
    return JobView.of(job, api.settings.retention_days)


@router.get("/{job_id}/events", response_class=StreamingResponse,
            summary="Progress as Server-Sent Events (event: progress ..., then event: done), on any replica",
            responses={200: {"content": {"text/event-stream": {}}}, **NOT_FOUND, **STORAGE_DOWN})
async def job_events(job: JobManifest = Depends(job_or_404), api: ApiState = Depends(api_state),
                     last_event_id: str | None = Header(None, alias="last-event-id", max_length=64,
                                                        description="the id of the last event seen (reconnecting)")
                     ) -> StreamingResponse:
    return StreamingResponse(job_event_stream(job.id, api.manifests, api.queue.current(), last_event_id),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/{job_id}/artifacts/{name}", response_class=StreamingResponse,
            summary="Download an artefact; supports Range requests (seekable MP4)",
            responses={206: {"description": "the requested byte range"}, **NOT_FOUND,
                       409: {"model": Problem, "description": "the object no longer matches the size and ETag "
                                                              "recorded when the job finished, or was replaced "
                                                              "while being read"},
                       416: {"model": Problem, "description": "a range outside the artefact"}, **STORAGE_DOWN})
async def get_artifact(name: str, job: JobManifest = Depends(job_or_404), api: ApiState = Depends(api_state),
                       range_header: str | None = Header(None, alias="range")) -> Response:
    artifact = job.artifacts.get(name)
    if artifact is None:
        raise HTTPException(404, f"job {job.id} has no artefact {name!r}")
    try:
        size, etag = await asyncio.to_thread(api.store.stat, artifact.key)
    except ObjectNotFound:
        raise HTTPException(404, f"artefact {name!r} is gone from storage") from None
    if size != artifact.size_bytes or (artifact.etag and etag != artifact.etag):
        return problem(409, f"artefact {name!r} changed in storage after job {job.id} finished "
                            f"(size {size} / ETag {etag}, recorded {artifact.size_bytes} / {artifact.etag})")
    try:
        wanted = parse_range(range_header, size)
    except RangeNotSatisfiable as exc:
        return problem(416, str(exc), {"Content-Range": f"bytes */{size}"})
    headers = {"Accept-Ranges": "bytes", "Content-Disposition": f'inline; filename="{name}"'}
    if etag:
        headers["ETag"] = f'"{etag}"'
    if size == 0:
        return Response(b"", media_type=artifact.content_type, headers=headers)
    start, length = (0, size) if wanted is None else (wanted.start, wanted.length)
    try:  # conditional on the ETag just checked: an object replaced since is refused, never sent under it
        body = await asyncio.to_thread(api.store.open_range, artifact.key, start, length, etag)
    except ObjectChanged:
        return problem(409, f"artefact {name!r} changed in storage while it was being sent (ETag {etag} no "
                            "longer current)")
    except ObjectNotFound:
        raise HTTPException(404, f"artefact {name!r} is gone from storage") from None
    headers["Content-Length"] = str(length)
    if wanted is None:
        return StreamingResponse(body, media_type=artifact.content_type, headers=headers)
    headers["Content-Range"] = wanted.content_range(size)
    return StreamingResponse(body, status_code=206, media_type=artifact.content_type, headers=headers)


@router.post("/{job_id}/retry", status_code=202, response_model=JobView,
             summary="Run a failed job again; it resumes from where it stopped",
             responses={**NOT_FOUND, 409: {"model": Problem, "description": "the job has not failed"},
                        **QUOTA_ERRORS, **STORAGE_DOWN})
async def retry_job(response: Response, job: JobManifest = Depends(job_or_404),
                    caller: Caller = Depends(require_caller), api: ApiState = Depends(api_state)) -> JobView:
    if job.state == JobState.failed:
        await api.quotas.check_jobs_in_flight(caller)
    job = await api.control.retry(job)
    await api.manifests.mark_in_flight(job)
    response.headers["Location"] = f"{API}/jobs/{job.id}"
    return JobView.of(job, api.settings.retention_days)


@router.delete("/{job_id}", status_code=204, response_class=Response,
               summary="Cancel a job (its stage work stops) and delete all its objects",
               responses={**NOT_FOUND, **STORAGE_DOWN})
async def delete_job(job: JobManifest = Depends(job_or_404), api: ApiState = Depends(api_state)) -> Response:
    await api.control.delete(job.id, finished=job.state.finished)
    return Response(status_code=204)

