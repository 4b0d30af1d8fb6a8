"""Running one job through the four stages: probe, decode + 2D per segment, camera motion per segment, lift,
render.

Segments run concurrently (up to ``stage_concurrency`` stage calls in flight per job), and the camera motion
of a segment starts as soon as the 2D of that segment and of the one before it are stored, while later
segments are still being decoded and estimated; the lift waits for every segment's 2D and camera motion.

Every stage call names its job in the call metadata (``job_scope.job_metadata``) and is skipped when
its output object already exists, so a resumed job (redelivered to another worker, or retried) only
redoes what is missing.
Stage outages (UNAVAILABLE, DEADLINE_EXCEEDED) and storage outages are waited out within the
outage budget (``gateway.jobs.outage``); any other gRPC failure, or an outage past the budget, becomes the
job's ``JobError``. Cancellation (a DELETE, or a stopping worker whose grace ran out) is the caller's
to handle: it propagates out of ``run`` untouched.

When the worker stops (``stopping`` is set), a job stops at the next step boundary: the steps in flight
(segments being decoded and estimated, a lift or a render) finish and are stored, no new one starts,
a wait for a dependency that is down ends, and ``run`` raises ``JobHandedBack``.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from hpe3d.v1 import common_pb2, decoder_pb2, lifter3d_pb2, pose2d_pb2, renderer_pb2
from services.common.errors import no_person_found
from services.common.job_scope import job_metadata
from services.common.lifter_weights import stage_weights_spec
from services.common.logs import job_id_var
from services.common.request_options import persons_per_frame, working_size
from services.common.settings import Settings
from services.common.stage_names import DECODER, JOBS, LIFTER3D, POSE2D, RENDERER
from services.common.storage import ObjectStore

from ..jobs.job_errors import JobFailed, error_from_outage, error_from_rpc
from ..jobs.manifest import user_slug
from ..jobs.manifest import (JobError, JobManifest, JobState, StoredArtifact, output_prefix, poses3d_key,
                             segment_camera_key, segment_keys)
from ..jobs.outage import OutagePolicy, OutageTooLong
from ..jobs.probe import apply_probe
from ..jobs.stages import StageClients
from . import metrics
from .reporter import JobDeleted, JobReporter
from .segments import SegmentPlan, plan_segments

log = logging.getLogger(__name__)


class JobHandedBack(Exception):
    """The worker stops: the job stopped at a step boundary, with everything done so far stored."""


class JobPipeline:
    """Runs jobs; one instance per worker, shared by all its jobs (each job in its own task).
    ``stopping``, once set, makes every job stop at its next step boundary."""

    def __init__(self, settings: Settings, store: ObjectStore, clients: StageClients, reporter: JobReporter,
                 outage: OutagePolicy | None = None, stopping: asyncio.Event | None = None):
        self.settings = settings
        self.store = store
        self.clients = clients
        self.reporter = reporter
        self.outage = outage or OutagePolicy(settings.outage_budget_s)
        self.stopping = stopping or asyncio.Event()

    def _step_boundary(self, next_step: str) -> None:
        """Raise ``JobHandedBack`` when the worker stops, instead of starting ``next_step``."""
        if self.stopping.is_set():
            raise JobHandedBack(f"the worker stopped before {next_step}")

    # -- the job --------------------------------------------------------------------------------
    async def run(self, job: JobManifest) -> JobManifest:
        """Run ``job`` to a final state (succeeded or failed), saving the manifest after every
        step and recording the end with ``JobReporter.save_final``. ``JobDeleted``,
        ``JobHandedBack`` and cancellation propagate."""
        token = job_id_var.set(job.id)
        try:
            try:
                self._step_boundary("the probe")
                job.state, job.error = JobState.running, None
                await self.reporter.save(job, DECODER, "started")
                info = await self._probe(job)
                poses2d = await self._segments(job, info)
                await self._cameras(job, info, len(poses2d))
                await self._lift(job, info, poses2d)
                await self._render(job, info, poses2d)
                job.state = JobState.succeeded
            except JobFailed as failed:
                log.warning("job %s failed: %s", job.id, failed)
                job.state, job.error = JobState.failed, failed.error
            except OutageTooLong as outage:  # storage, outside any stage call
                log.warning("job %s failed: %s", job.id, outage)
                job.state, job.error = JobState.failed, error_from_outage(JOBS, outage)
            except (JobDeleted, JobHandedBack, asyncio.CancelledError):
                raise
            except Exception as exc:  # noqa: BLE001 - one job's bug never takes the worker down
                log.exception("job %s crashed", job.id)
                job.state = JobState.failed
                job.error = JobError(stage=JOBS, code="INTERNAL", message=f"internal error: {exc}")
            await self.reporter.save_final(job)
            return job
        finally:
            job_id_var.reset(token)

    # -- steps ----------------------------------------------------------------------------------
    async def _exists(self, key: str) -> bool:
        return await self.outage.storage(f"stat {key}", lambda: self.store.exists(key))

    async def _probe(self, job: JobManifest) -> common_pb2.VideoInfo:
        info = await self._unary(DECODER, "Probe", self.clients.decoder.Probe,
                                 decoder_pb2.ProbeRequest(video=self.store.ref(job.input_key)), job.id)
        apply_probe(job, info, self.settings)
        return info

    async def _segments(self, job: JobManifest, info: common_pb2.VideoInfo) -> list[common_pb2.ObjectRef]:
        plans = plan_segments(info.frame_count, self.settings.segment_frames)
        job.segment_count = len(plans)
        job.progress[DECODER].total = job.progress[POSE2D].total = info.frame_count
        job.progress[DECODER].done = job.progress[POSE2D].done = 0
        await self.reporter.save(job, DECODER, f"{len(plans)} segments")
        limit = asyncio.Semaphore(max(1, self.settings.stage_concurrency))
        found: dict[int, int] = {}  # segment index -> frames with a person, for segments estimated now
        stored = [asyncio.Event() for _ in plans]  # set once segment i's 2D is stored
        track_camera = _tracks_camera(info)

        async def one(plan: SegmentPlan) -> str:
            async with limit:
                self._step_boundary(f"segment {plan.index}")
                key = await self._segment(job, info, plan, found)
            stored[plan.index].set()
            if track_camera:  # needs this segment's 2D and the previous one's
                if plan.index:
                    await stored[plan.index - 1].wait()
                await self._camera(job, plan.index, limit)
            return key

        tasks = [asyncio.create_task(one(p)) for p in plans]
        try:
            keys = await _all_or_first_error(tasks)
        except JobHandedBack:  # the calls in flight finish; the others stop before they start
            for event in stored:  # a camera step waiting for a segment that will not come stops at its boundary
                event.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        job.poses2d_keys = keys
        if len(found) == len(plans) and sum(found.values()) == 0:
            nobody = no_person_found(info.frame_count, 0, still_image=info.still_image,
                                     max_persons=self._max_persons(job))
            raise JobFailed(JobError(stage=POSE2D, code="FAILED_PRECONDITION", message=str(nobody)))
        await self.reporter.save(job, POSE2D, "all segments done")
        return [self.store.ref(k) for k in keys]

    def _max_persons(self, job: JobManifest) -> int:
        return persons_per_frame(job.options.max_persons, self.settings)

    async def _segment(self, job: JobManifest, info: common_pb2.VideoInfo, plan: SegmentPlan,
                       found: dict[int, int]) -> str:
        """Decode and estimate one segment (each step skipped when its output is stored); records in
        ``found`` how many of its frames had a person when it was estimated now."""
        frames_key, poses_key = segment_keys(job.id, plan.index)
        if not await self._exists(poses_key):
            if await self._exists(frames_key):
                segment = common_pb2.SegmentRef(job_id=job.id, index=plan.index, start_frame=plan.start_frame,
                                                frame_count=plan.frame_count, frames=self.store.ref(frames_key))
            else:
                segment = await self._unary(DECODER, "Decode", self.clients.decoder.Decode, decoder_pb2.DecodeRequest(
                    job_id=job.id, index=plan.index, video=self.store.ref(job.input_key),
                    start_frame=plan.start_frame, frame_count=plan.frame_count,
                    working_size=working_size(job.options.working_size, self.settings),
                    output=self.store.ref(frames_key)), job.id)
            job.progress[DECODER].done += plan.frame_count
            await self.reporter.save(job, DECODER, f"segment {plan.index} decoded")
            reply = await self._unary(POSE2D, "Estimate", self.clients.pose2d.Estimate, pose2d_pb2.EstimateRequest(
                segment=segment, output=self.store.ref(poses_key), max_persons=self._max_persons(job),
                pose_model=job.options.pose_model), job.id)
            found[plan.index] = reply.frames_with_person
        else:
            job.progress[DECODER].done += plan.frame_count
        job.progress[POSE2D].done += plan.frame_count
        await self.reporter.save(job, POSE2D, f"segment {plan.index} done")
        return poses_key

    async def _cameras(self, job: JobManifest, info: common_pb2.VideoInfo, segments: int) -> None:
        """The camera motion of every segment not stored yet (most were made while the segments ran); none for
        a photo or a one-frame video."""
        if not _tracks_camera(info):
            return
        limit = asyncio.Semaphore(max(1, self.settings.stage_concurrency))
        tasks = [asyncio.create_task(self._camera(job, i, limit)) for i in range(segments)]
        try:
            await _all_or_first_error(tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.reporter.save(job, DECODER, "camera motion of every segment")

    async def _camera(self, job: JobManifest, index: int, limit: asyncio.Semaphore) -> None:
        """The camera motion of segment ``index`` (``Decoder.TrackCamera``: after the 2D, which keeps the people
        out of it; anchored to the previous segment's last frame, whose frames and 2D must be stored), skipped
        when stored."""
        key = segment_camera_key(job.id, index)
        if await self._exists(key):
            return
        frames, poses = segment_keys(job.id, index)
        request = decoder_pb2.TrackCameraRequest(job_id=job.id, frames=self.store.ref(frames),
                                                 poses2d=self.store.ref(poses), output=self.store.ref(key))
        if index:
            frames, poses = segment_keys(job.id, index - 1)
            request.previous_frames.CopyFrom(self.store.ref(frames))
            request.previous_poses2d.CopyFrom(self.store.ref(poses))
        async with limit:
            self._step_boundary(f"the camera motion of segment {index}")
            await self._unary(DECODER, "TrackCamera", self.clients.decoder.TrackCamera, request, job.id)

    async def _lift(self, job: JobManifest, info: common_pb2.VideoInfo, poses2d: list[common_pb2.ObjectRef]) -> None:
        """Lift every person; a photo or a 1-frame video keeps tracks of a single frame."""
        key = poses3d_key(job.id)
        if await self._exists(key):
            job.poses3d_key = key
            job.progress[LIFTER3D].done = job.progress[LIFTER3D].total = max(job.progress[LIFTER3D].total, 1)
            return
        self._step_boundary("lifting")
        cameras = [segment_camera_key(job.id, i) for i in range(len(poses2d))]
        cameras = [self.store.ref(k) for k in cameras if await self._exists(k)]  # none for a photo
        request = lifter3d_pb2.LiftRequest(job_id=job.id, width=job.video.width, height=job.video.height,
                                           segments=poses2d, output=self.store.ref(key), fps=info.fps,
                                           min_track_frames=1 if info.frame_count == 1 else 0,
                                           camera_motions=cameras,
                                           lifter_weights=stage_weights_spec(job.options.lifter_weights,
                                                                             user_slug(job.user)))
        reply = await self._streaming(LIFTER3D, "Lift", self.clients.lifter3d.Lift, request, job)
        job.warnings += [w for w in reply.poses.warnings if w not in job.warnings]
        job.poses3d_key = key
        await self.reporter.save(job, LIFTER3D, "done")

    async def _render(self, job: JobManifest, info: common_pb2.VideoInfo, poses2d: list[common_pb2.ObjectRef]) -> None:
        self._step_boundary("rendering")
        request = renderer_pb2.RenderRequest(
            job_id=job.id, video=self.store.ref(job.input_key), video_info=info, poses2d=poses2d,
            poses3d=self.store.ref(job.poses3d_key), output_prefix=output_prefix(job.id),
            bucket=self.store.bucket, skip_video=not job.options.render)
        result: renderer_pb2.RenderReply = await self._streaming(RENDERER, "Render", self.clients.renderer.Render,
                                                                 request, job)
        artifacts = {}
        for a in result.artifacts:
            size, etag = await self.outage.storage(f"stat {a.ref.key}", lambda key=a.ref.key: self.store.stat(key))
            artifacts[a.name] = StoredArtifact(key=a.ref.key, content_type=a.content_type or "application/octet-stream",
                                               size_bytes=size, etag=etag)
        job.artifacts = artifacts

    # -- calls that wait outages out ------------------------------------------------------------
    async def _call(self, stage: str, method: str, attempt: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``attempt`` (one stage call) until it succeeds, waiting out outages within the
        budget; other gRPC errors, or an outage past the budget, fail the job."""
        async def timed() -> Any:
            started, code = time.perf_counter(), "OK"
            try:
                return await attempt()
            except grpc.aio.AioRpcError as exc:
                code = exc.code().name
                raise
            finally:
                metrics.STAGE_CALL_SECONDS.labels(stage, method, code).observe(time.perf_counter() - started)

        def on_retry(_exc: BaseException, _delay_s: float) -> None:
            metrics.OUTAGE_RETRIES.labels(stage).inc()
            self._step_boundary(f"calling {stage}.{method} again")  # a stopping worker waits out no outage

        try:
            return await self.outage.call(f"{stage}.{method}", timed, on_retry=on_retry)
        except grpc.aio.AioRpcError as exc:
            raise JobFailed(error_from_rpc(stage, exc)) from exc
        except OutageTooLong as outage:
            raise JobFailed(error_from_outage(stage, outage)) from outage

    async def _unary(self, stage: str, method: str, call: Callable[..., Awaitable[Any]], request: Any, job_id: str) -> Any:
        return await self._call(stage, method, lambda: call(
            request, metadata=job_metadata(job_id), timeout=self.settings.stage_timeout_s))

    async def _streaming(self, stage: str, method: str, call: Callable[..., AsyncIterator[Any]], request: Any,
                         job: JobManifest) -> Any:
        """Call a server-streaming stage (LiftUpdate / RenderUpdate), forwarding its Progress to the
        manifest; returns the ``result`` of the last update."""
        progress = job.progress[stage]

        async def attempt() -> Any:
            result = None
            async for update in call(request, metadata=job_metadata(job.id), timeout=self.settings.stage_timeout_s):
                if update.HasField("progress"):
                    progress.done, progress.total = update.progress.done, update.progress.total
                    await self.reporter.save(job, stage, update.progress.message)
                elif update.HasField("result"):
                    result = update.result
            if result is None:
                raise JobFailed(JobError(stage=stage, code="INTERNAL",
                                         message=f"{stage} ended its stream without a result"))
            progress.total = max(progress.total, 1)
            progress.done = progress.total
            return result

        return await self._call(stage, method, attempt)


def _tracks_camera(info: common_pb2.VideoInfo) -> bool:
    """Whether a job estimates camera motion: a video of at least two frames (not a photo)."""
    return not info.still_image and info.frame_count >= 2


async def _all_or_first_error(tasks: list[asyncio.Task]) -> list:
    """Results of all ``tasks`` in order, or the first exception any of them raised."""
    pending = set(tasks)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                raise t.exception()
    return [t.result() for t in tasks]
