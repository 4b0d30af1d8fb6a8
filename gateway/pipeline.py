"""Running one job through the four stages: probe, decode + 2D per segment, lift, render.

Every stage call carries the ``x-job-id`` metadata, is retried on UNAVAILABLE / DEADLINE_EXCEEDED
with exponential back-off, and is skipped when its output object already exists, so a resumed
job only redoes what is missing. gRPC failures become the job's ``JobError``.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from hpe3d.v1 import common_pb2, decoder_pb2, lifter3d_pb2, pose2d_pb2, renderer_pb2
from services.common.logs import job_id_var
from services.common.settings import Settings
from services.common.storage import ObjectStore, StorageUnavailable

from . import metrics
from .journal import JobJournal
from .manifest import (JobError, JobManifest, JobState, StoredArtifact, VideoSummary, output_prefix,
                       poses3d_key, segment_keys)
from .segments import SegmentPlan, plan_segments
from .stages import StageClients

log = logging.getLogger(__name__)

RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
# Job error codes that mean the upload itself is unusable: answered 422 at submission.
INPUT_ERRORS = ("INVALID_ARGUMENT", "VIDEO_TOO_LONG")
SHUTDOWN = "gateway shutdown"  # cancel message: stop the job but leave it resumable


class JobFailed(Exception):
    """Ends a job as failed with ``error``."""

    def __init__(self, error: JobError):
        super().__init__(f"{error.stage}: {error.code}: {error.message}")
        self.error = error


def error_from_rpc(stage: str, exc: grpc.aio.AioRpcError) -> JobError:
    """The job error a person reads when a stage call ended with ``exc``."""
    code = exc.code()
    details = exc.details() or code.name
    if code in RETRYABLE:
        return JobError(stage=stage, code=code.name, message=f"dependency unavailable: {stage}: {details}")
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND):
        return JobError(stage=stage, code=code.name, message=details)
    return JobError(stage=stage, code=code.name, message=f"{stage} failed: {details}")


@dataclass(frozen=True)
class RetryPolicy:
    retries: int
    backoff_s: float = 0.5

    def delay(self, attempt: int) -> float:
        return self.backoff_s * (2 ** attempt)


class JobPipeline:
    """Runs jobs; one instance per app, shared by all jobs (each job in its own task)."""

    def __init__(self, settings: Settings, store: ObjectStore, clients: StageClients, journal: JobJournal,
                 retry: RetryPolicy | None = None):
        self.settings = settings
        self.store = store
        self.clients = clients
        self.journal = journal
        self.retry = retry or RetryPolicy(settings.stage_retries)

    # -- the job --------------------------------------------------------------------------------
    async def admit(self, job: JobManifest) -> common_pb2.VideoInfo | None:
        """Probe the upload before the job is accepted, so that a file that is not a video, or a
        video over the duration limit, is refused at once. Such a job is saved as failed with the
        reason and ``JobFailed`` is raised. Returns the video's facts, or None when the probe
        could not run (decoder down): the job's run then probes again, with retries."""
        token = job_id_var.set(job.id)
        try:
            return await self._probe(job)
        except JobFailed as failed:
            if failed.error.code not in INPUT_ERRORS:
                return None
            job.state, job.error = JobState.failed, failed.error
            await self.journal.save(job)
            raise
        finally:
            job_id_var.reset(token)

    async def run(self, job: JobManifest, info: common_pb2.VideoInfo | None = None) -> JobManifest:
        """Run ``job`` to a final state; the manifest is saved after every step. ``info`` is the
        probe's answer when ``admit`` already has it. Re-raises cancellation after recording the
        job as cancelled."""
        token = job_id_var.set(job.id)
        try:
            job.state, job.error = JobState.running, None
            await self.journal.save(job, "decode", "started")
            info = info or await self._probe(job)
            poses2d = await self._segments(job, info)
            await self._lift(job, info, poses2d)
            await self._render(job, info, poses2d)
            job.state = JobState.succeeded
            await self.journal.save(job, "render", "succeeded")
        except JobFailed as failed:
            log.warning("job %s failed: %s", job.id, failed)
            job.state, job.error = JobState.failed, failed.error
            await self.journal.save(job)
        except asyncio.CancelledError as stop:
            if SHUTDOWN in stop.args:
                raise
            job.state = JobState.cancelled
            await asyncio.shield(self.journal.save(job))
            raise
        except StorageUnavailable as exc:
            job.state = JobState.failed
            job.error = JobError(stage="gateway", code="UNAVAILABLE", message=f"dependency unavailable: storage: {exc}")
            await self._save_quietly(job)
        except Exception as exc:  # noqa: BLE001 - one job's bug never takes the gateway down
            log.exception("job %s crashed", job.id)
            job.state = JobState.failed
            job.error = JobError(stage="gateway", code="INTERNAL", message=f"internal error: {exc}")
            await self._save_quietly(job)
        finally:
            job_id_var.reset(token)
        return job

    async def _save_quietly(self, job: JobManifest) -> None:
        try:
            await self.journal.save(job)
        except Exception:  # noqa: BLE001
            log.exception("could not save the manifest of job %s", job.id)

    # -- steps ----------------------------------------------------------------------------------
    async def _probe(self, job: JobManifest) -> common_pb2.VideoInfo:
        info = await self._unary("decode", "Probe", self.clients.decoder.Probe,
                                 decoder_pb2.ProbeRequest(video=self.store.ref(job.input_key)), job.id)
        job.video = VideoSummary(width=info.width, height=info.height, fps=info.fps, frame_count=info.frame_count,
                                 duration_s=info.duration_s, rotation_deg=info.rotation_deg, codec=info.codec,
                                 variable_frame_rate=info.variable_frame_rate, still_image=info.still_image,
                                 announced_frame_count=info.announced_frame_count)
        job.warnings = list(info.warnings)
        if info.duration_s > self.settings.max_duration_s:
            raise JobFailed(JobError(stage="decode", code="VIDEO_TOO_LONG", message=(
                f"video is {info.duration_s:.1f} s long; the limit is {self.settings.max_duration_s:.0f} s")))
        if info.frame_count <= 0:
            raise JobFailed(JobError(stage="decode", code="INVALID_ARGUMENT", message="the video holds no decodable frames"))
        return info

    async def _segments(self, job: JobManifest, info: common_pb2.VideoInfo) -> list[common_pb2.ObjectRef]:
        plans = plan_segments(info.frame_count, self.settings.segment_frames)
        job.segment_count = len(plans)
        job.progress["decode"].total = job.progress["pose2d"].total = info.frame_count
        job.progress["decode"].done = job.progress["pose2d"].done = 0
        await self.journal.save(job, "decode", f"{len(plans)} segments")
        limit = asyncio.Semaphore(max(1, self.settings.stage_concurrency))

        async def one(plan: SegmentPlan) -> str:
            async with limit:
                return await self._segment(job, info, plan)

        tasks = [asyncio.create_task(one(p)) for p in plans]
        try:
            keys = await _all_or_first_error(tasks)
        finally:
            for t in tasks:
                t.cancel()
        job.poses2d_keys = keys
        await self.journal.save(job, "pose2d", "all segments done")
        return [self.store.ref(k) for k in keys]

    async def _segment(self, job: JobManifest, info: common_pb2.VideoInfo, plan: SegmentPlan) -> str:
        frames_key, poses_key = segment_keys(job.id, plan.index)
        if not await asyncio.to_thread(self.store.exists, poses_key):
            if await asyncio.to_thread(self.store.exists, frames_key):
                segment = common_pb2.SegmentRef(job_id=job.id, index=plan.index, start_frame=plan.start_frame,
                                                frame_count=plan.frame_count, frames=self.store.ref(frames_key))
            else:
                segment = await self._unary("decode", "Decode", self.clients.decoder.Decode, decoder_pb2.DecodeRequest(
                    job_id=job.id, index=plan.index, video=self.store.ref(job.input_key),
                    start_frame=plan.start_frame, frame_count=plan.frame_count,
                    working_size=job.options.working_size or self.settings.working_size,
                    output=self.store.ref(frames_key)), job.id)
            job.progress["decode"].done += plan.frame_count
            await self.journal.save(job, "decode", f"segment {plan.index} decoded")
            await self._unary("pose2d", "Estimate", self.clients.pose2d.Estimate, pose2d_pb2.EstimateRequest(
                segment=segment, output=self.store.ref(poses_key),
                max_persons=job.options.max_persons or self.settings.max_persons), job.id)
        else:
            job.progress["decode"].done += plan.frame_count
        job.progress["pose2d"].done += plan.frame_count
        await self.journal.save(job, "pose2d", f"segment {plan.index} done")
        return poses_key

    async def _lift(self, job: JobManifest, info: common_pb2.VideoInfo, poses2d: list[common_pb2.ObjectRef]) -> None:
        """Lift every person; a photo or a 1-frame video keeps tracks of a single frame."""
        key = poses3d_key(job.id)
        if await asyncio.to_thread(self.store.exists, key):
            job.poses3d_key = key
            job.progress["lift"].done = job.progress["lift"].total = max(job.progress["lift"].total, 1)
            return
        request = lifter3d_pb2.LiftRequest(job_id=job.id, width=job.video.width, height=job.video.height,
                                           segments=poses2d, output=self.store.ref(key), fps=info.fps,
                                           min_track_frames=1 if info.frame_count == 1 else 0)
        await self._streaming("lift", "Lift", self.clients.lifter3d.Lift, request, job)
        job.poses3d_key = key
        await self.journal.save(job, "lift", "done")

    async def _render(self, job: JobManifest, info: common_pb2.VideoInfo, poses2d: list[common_pb2.ObjectRef]) -> None:
        request = renderer_pb2.RenderRequest(
            job_id=job.id, video=self.store.ref(job.input_key), video_info=info, poses2d=poses2d,
            poses3d=self.store.ref(job.poses3d_key), output_prefix=output_prefix(job.id),
            bucket=self.store.bucket, skip_video=not job.options.render)
        result: renderer_pb2.RenderReply = await self._streaming("render", "Render", self.clients.renderer.Render,
                                                                 request, job)
        job.artifacts = {a.name: StoredArtifact(key=a.ref.key, content_type=a.content_type or "application/octet-stream",
                                                size_bytes=a.size_bytes) for a in result.artifacts}

    # -- calls with retries ---------------------------------------------------------------------
    async def _with_retries(self, stage: str, method: str, attempt: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``attempt`` (one stage call), retrying UNAVAILABLE / DEADLINE_EXCEEDED with back-off;
        any other gRPC error, or the last retryable one, fails the job."""
        for n in range(self.retry.retries + 1):
            started, code = time.perf_counter(), "OK"
            try:
                return await attempt()
            except grpc.aio.AioRpcError as exc:
                code = exc.code().name
                if exc.code() not in RETRYABLE or n == self.retry.retries:
                    raise JobFailed(error_from_rpc(stage, exc)) from exc
                log.warning("%s.%s %s (attempt %d), retrying", stage, method, code, n + 1)
            finally:
                metrics.STAGE_CALL_SECONDS.labels(stage, method, code).observe(time.perf_counter() - started)
            await asyncio.sleep(self.retry.delay(n))
        raise AssertionError("unreachable")

    async def _unary(self, stage: str, method: str, call: Callable[..., Awaitable[Any]], request: Any, job_id: str) -> Any:
        return await self._with_retries(stage, method, lambda: call(
            request, metadata=(("x-job-id", job_id),), timeout=self.settings.stage_timeout_s))

    async def _streaming(self, stage: str, method: str, call: Callable[..., AsyncIterator[Any]], request: Any,
                         job: JobManifest) -> Any:
        """Call a server-streaming stage (LiftUpdate / RenderUpdate), forwarding its Progress to the
        manifest; returns the ``result`` of the last update."""
        progress = job.progress[stage]

        async def attempt() -> Any:
            result = None
            async for update in call(request, metadata=(("x-job-id", job.id),), timeout=self.settings.stage_timeout_s):
                if update.HasField("progress"):
                    progress.done, progress.total = update.progress.done, update.progress.total
                    await self.journal.save(job, stage, update.progress.message)
                elif update.HasField("result"):
                    result = update.result
            if result is None:
                raise JobFailed(JobError(stage=stage, code="INTERNAL",
                                         message=f"{stage} ended its stream without a result"))
            progress.total = max(progress.total, 1)
            progress.done = progress.total
            return result

        return await self._with_retries(stage, method, attempt)


async def _all_or_first_error(tasks: list[asyncio.Task]) -> list:
    """Results of all ``tasks`` in order, or the first exception any of them raised."""
    pending = set(tasks)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            if t.exception() is not None:
                raise t.exception()
    return [t.result() for t in tasks]
