"""The job pipeline against fake stage stubs (in-process) and a real SeaweedFS store: stages in
order, resumption, outages waited out within the budget, errors, cancellation."""
from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field

import grpc
import pytest

from gateway.jobs.events import JobEvent
from gateway.jobs.manifest import JobManifest, JobState, new_job_id, segment_camera_key, segment_keys
from gateway.jobs.manifest_store import ManifestStore
from gateway.jobs.outage import Backoff, OutagePolicy
from gateway.worker.pipeline import JobHandedBack, JobPipeline
from gateway.worker.reporter import JobReporter
from hpe3d.v1 import common_pb2, lifter3d_pb2, pose2d_pb2, renderer_pb2


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


@dataclass
class FakeStages:
    """Stand-ins for the four stubs: they record calls, write the objects a real stage writes and
    fail on request (a list of errors raised by the next calls of a method)."""

    store: object
    frame_count: int = 300
    duration_s: float = 12.0
    failures: dict[str, list[grpc.aio.AioRpcError]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (method, job id from metadata)
    decoded: list[int] = field(default_factory=list)
    tracked: list[tuple[str, str, str]] = field(default_factory=list)  # TrackCamera: frames, previous frames, 2D
    lifted_cameras: list[str] = field(default_factory=list)  # the camera motions the lifter was given
    estimated: set[int] = field(default_factory=set)  # segments whose 2D the fake has stored
    #: per TrackCamera call: (segment index, the segments whose 2D was stored at that moment)
    estimated_before_tracking: list[tuple[int, set[int]]] = field(default_factory=list)
    #: when set: the Estimate of segment ``hold_estimate[0]`` waits (up to 5 s) for this event
    hold_estimate: tuple[int, asyncio.Event] | None = None

    def _enter(self, method: str, metadata) -> None:
        self.calls.append((method, dict(metadata).get("x-job-id", "")))
        pending = self.failures.get(method)
        if pending:
            raise pending.pop(0)

    # Decoder
    async def Probe(self, request, metadata=(), timeout=None):
        self._enter("Probe", metadata)
        return common_pb2.VideoInfo(width=640, height=360, fps=25.0, frame_count=self.frame_count,
                                    duration_s=self.duration_s, codec="h264")

    async def Decode(self, request, metadata=(), timeout=None):
        self._enter("Decode", metadata)
        self.decoded.append(request.index)
        self.store.put_message(request.output.key, common_pb2.FrameSegment(start_frame=request.start_frame))
        return common_pb2.SegmentRef(job_id=request.job_id, index=request.index, start_frame=request.start_frame,
                                     frame_count=request.frame_count, frames=request.output)

    async def TrackCamera(self, request, metadata=(), timeout=None):
        self._enter("TrackCamera", metadata)
        assert self.store.exists(request.poses2d)   # after the segment's 2D
        self.tracked.append((request.frames.key, request.previous_frames.key, request.previous_poses2d.key))
        index = int(request.frames.key.split("/")[-2])
        self.estimated_before_tracking.append((index, set(self.estimated)))
        self.store.put_message(request.output.key, common_pb2.CameraMotion())
        return request.output

    # Pose2D
    async def Estimate(self, request, metadata=(), timeout=None):
        self._enter("Estimate", metadata)
        assert self.store.exists(request.segment.frames)
        if self.hold_estimate and self.hold_estimate[0] == request.segment.index:
            await asyncio.wait_for(self.hold_estimate[1].wait(), 5.0)
        self.estimated.add(request.segment.index)
        poses = common_pb2.Poses2D(start_frame=request.segment.start_frame, frame_count=request.segment.frame_count)
        self.store.put_message(request.output.key, poses)
        return pose2d_pb2.EstimateReply(poses=poses, stored=request.output,
                                        frames_with_person=request.segment.frame_count)

    # Lifter3D
    async def _lift(self, request, metadata):
        self._enter("Lift", metadata)
        assert len(request.segments) == -(-self.frame_count // 128)
        self.lifted_cameras = [ref.key for ref in request.camera_motions]
        for done in (1, 2):
            yield lifter3d_pb2.LiftUpdate(progress=common_pb2.Progress(stage="lifter3d", done=done, total=2))
        self.store.put_message(request.output.key, common_pb2.Poses3D(model="fake"))
        yield lifter3d_pb2.LiftUpdate(result=lifter3d_pb2.LiftReply(stored=request.output))

    def Lift(self, request, metadata=(), timeout=None):
        return self._lift(request, metadata)

    # Renderer
    async def _render(self, request, metadata):
        self._enter("Render", metadata)
        key = request.output_prefix + "poses.json"
        self.store.put_bytes(key, b"{}", "application/json")
        yield renderer_pb2.RenderUpdate(progress=common_pb2.Progress(stage="renderer", done=5, total=10))
        yield renderer_pb2.RenderUpdate(result=renderer_pb2.RenderReply(artifacts=[renderer_pb2.Artifact(
            name="poses.json", ref=common_pb2.ObjectRef(bucket=request.bucket, key=key),
            content_type="application/json", size_bytes=2)]))

    def Render(self, request, metadata=(), timeout=None):
        return self._render(request, metadata)


@dataclass
class FakeClients:
    decoder: FakeStages
    pose2d: FakeStages
    lifter3d: FakeStages
    renderer: FakeStages


FAST = Backoff(first_s=0.01, cap_s=0.05, jitter=0.0)


def make_pipeline(settings, store, fake: FakeStages, events: list[JobEvent] | None = None,
                  budget_s: float = 5.0) -> JobPipeline:
    """A pipeline whose events land in ``events`` and whose outage budget is ``budget_s``."""
    s = dataclasses.replace(settings, segment_frames=128, stage_concurrency=2, max_duration_s=60)
    outage = OutagePolicy(budget_s, FAST)

    async def publish(_job_id: str, body: bytes) -> None:
        if events is not None:
            events.append(JobEvent.from_bytes(body))
    reporter = JobReporter(ManifestStore(store), outage, publish, "test-worker", lease_s=30)
    return JobPipeline(s, store, FakeClients(fake, fake, fake, fake), reporter, outage)


def new_job(store) -> JobManifest:
    job_id = new_job_id()
    key = f"jobs/{job_id}/input/clip.mp4"
    store.put_bytes(key, b"video")
    return JobManifest(id=job_id, input_key=key, input_name="clip.mp4", input_bytes=5)


def test_job_runs_every_stage_and_records_progress(store, settings):
    fake = FakeStages(store)
    events: list[JobEvent] = []
    job = new_job(store)
    result = asyncio.run(make_pipeline(settings, store, fake, events).run(job))
    assert result.state == JobState.succeeded, result.error
    assert sorted(fake.decoded) == [0, 1, 2]
    assert {job_id for _, job_id in fake.calls} == {job.id}
    assert result.progress["decoder"].done == result.progress["pose2d"].done == 300
    assert result.progress["lifter3d"].done == result.progress["lifter3d"].total == 2
    assert result.progress["renderer"].done == result.progress["renderer"].total
    assert result.video.frame_count == 300 and len(result.poses2d_keys) == 3
    assert set(result.artifacts) == {"poses.json"}
    size, etag = store.stat(result.artifacts["poses.json"].key)
    assert result.artifacts["poses.json"].size_bytes == size == 2 and result.artifacts["poses.json"].etag == etag
    stored = JobManifest.from_json(store.get_bytes(job.key))
    assert stored.state == JobState.succeeded and stored.artifacts == result.artifacts
    assert stored.owner == "" and stored.lease_until is None  # a finished job has no owner
    assert events[-1].name == "done" and events[-1].payload.state == JobState.succeeded
    assert any(e.name == "progress" and e.payload.stage == "lifter3d" for e in events)
    assert any(e.name == "progress" and e.payload.state == JobState.running for e in events)


def test_camera_motion_follows_the_2d_and_reaches_the_lifter(store, settings):
    fake = FakeStages(store)
    job = new_job(store)
    result = asyncio.run(make_pipeline(settings, store, fake).run(job))
    assert result.state == JobState.succeeded, result.error
    methods = [m for m, _ in fake.calls]
    assert methods.count("TrackCamera") == 3
    # each segment's camera motion is tracked once its own 2D and the previous segment's 2D are stored (the fake
    # checks the first; the order of the stored 2D records the second)
    assert [index for index, _ in fake.estimated_before_tracking] and all(
        {index, max(0, index - 1)} <= done for index, done in fake.estimated_before_tracking)
    assert methods.index("Lift") > max(i for i, m in enumerate(methods) if m == "TrackCamera")
    frames = [segment_keys(job.id, i)[0] for i in range(3)]
    poses = [segment_keys(job.id, i)[1] for i in range(3)]
    # each segment is anchored to the previous one (its frames and 2D); the first to none
    assert sorted(fake.tracked) == sorted([(frames[0], "", ""), (frames[1], frames[0], poses[0]),
                                           (frames[2], frames[1], poses[1])])
    assert fake.lifted_cameras == [segment_camera_key(job.id, i) for i in range(3)]
    # resumed: stored camera motion is not tracked again
    fake.calls.clear()
    store.delete_prefix(job.poses3d_key)
    asyncio.run(make_pipeline(settings, store, fake).run(job))
    assert "TrackCamera" not in [m for m, _ in fake.calls]


def test_camera_motion_of_early_segments_overlaps_the_2d_of_later_ones(store, settings):
    """The last segment's 2D is held until the first segment's camera motion has been asked for: a pipeline
    that tracked cameras only after every segment's 2D would wait here and fail the job."""
    fake = FakeStages(store, frame_count=640)  # 5 segments
    tracked_first = asyncio.Event()
    fake.hold_estimate = (4, tracked_first)
    original = fake.TrackCamera

    async def track_camera(request, metadata=(), timeout=None):
        reply = await original(request, metadata, timeout)
        if request.frames.key.endswith("/00000/frames.pb"):
            tracked_first.set()
        return reply

    fake.TrackCamera = track_camera
    job = new_job(store)
    result = asyncio.run(make_pipeline(settings, store, fake).run(job))
    assert result.state == JobState.succeeded, result.error
    assert 4 not in next(done for index, done in fake.estimated_before_tracking if index == 0)
    assert sorted(index for index, _ in fake.estimated_before_tracking) == [0, 1, 2, 3, 4]


def test_running_job_is_owned_with_a_lease(store, settings):
    fake = FakeStages(store)
    job = new_job(store)
    seen: list[JobManifest] = []
    original = fake.Estimate

    async def peek(request, metadata=(), timeout=None):
        seen.append(JobManifest.from_json(store.get_bytes(job.key)))
        return await original(request, metadata, timeout)
    fake.Estimate = peek
    asyncio.run(make_pipeline(settings, store, fake).run(job))
    assert seen and all(m.owner == "test-worker" and m.owner_alive() for m in seen)
    assert all(m.shown_state() == JobState.running for m in seen)


def test_resumed_job_skips_segments_whose_output_exists(store, settings):
    fake = FakeStages(store)
    job = new_job(store)
    store.put_message(segment_keys(job.id, 0)[1], common_pb2.Poses2D())
    store.put_message(segment_keys(job.id, 1)[0], common_pb2.FrameSegment())
    result = asyncio.run(make_pipeline(settings, store, fake).run(job))
    assert result.state == JobState.succeeded
    assert fake.decoded == [2]  # 0 had its 2D, 1 had its frames
    assert [m for m, _ in fake.calls].count("Estimate") == 2


def test_unavailable_stage_is_waited_out(store, settings):
    fake = FakeStages(store, failures={"Estimate": [rpc_error(grpc.StatusCode.UNAVAILABLE, "triton down")] * 8,
                                       "Lift": [rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "slow")] * 3})
    result = asyncio.run(make_pipeline(settings, store, fake).run(new_job(store)))
    assert result.state == JobState.succeeded, result.error


def test_outage_past_the_budget_fails_the_job_with_the_reason(store, settings):
    fake = FakeStages(store, failures={"Lift": [rpc_error(grpc.StatusCode.UNAVAILABLE, "connection refused")] * 1000})
    result = asyncio.run(make_pipeline(settings, store, fake, budget_s=0.3).run(new_job(store)))
    assert result.state == JobState.failed
    assert result.error.stage == "lifter3d" and result.error.code == "UNAVAILABLE"
    assert result.error.message.startswith("dependency unavailable: lifter3d")
    assert "HPE3D_OUTAGE_BUDGET_S" in result.error.message and "connection refused" in result.error.message
    assert [m for m, _ in fake.calls].count("Lift") > 3


@pytest.mark.parametrize("method, code, message", [
    ("Probe", grpc.StatusCode.INVALID_ARGUMENT, "not a video: no video stream"),
    ("Lift", grpc.StatusCode.FAILED_PRECONDITION, "no person found in any frame"),
])
def test_stage_errors_become_the_job_error(store, settings, method, code, message):
    fake = FakeStages(store, failures={method: [rpc_error(code, message)]})
    result = asyncio.run(make_pipeline(settings, store, fake).run(new_job(store)))
    assert result.state == JobState.failed
    assert result.error.code == code.name and result.error.message == message
    assert [m for m, _ in fake.calls].count(method) == 1  # not retried
    assert "Render" not in [m for m, _ in fake.calls]


def test_too_long_video_fails_before_decoding(store, settings):
    fake = FakeStages(store, duration_s=3600.0)
    result = asyncio.run(make_pipeline(settings, store, fake).run(new_job(store)))
    assert result.state == JobState.failed and result.error.code == "VIDEO_TOO_LONG"
    assert "3600" in result.error.message and fake.decoded == []


def slow_estimates(fake: FakeStages, seconds: float) -> list[int]:
    """Make each ``Estimate`` of ``fake`` take ``seconds``; the indices of the segments it was called for."""
    original, started = fake.Estimate, []

    async def slow_estimate(request, metadata=(), timeout=None):
        started.append(request.segment.index)
        await asyncio.sleep(seconds)
        return await original(request, metadata, timeout)
    fake.Estimate = slow_estimate
    return started


def test_cancelled_job_stops_calling_stages(store, settings):
    fake = FakeStages(store, frame_count=128 * 6)
    job = new_job(store)

    async def run():
        pipeline = make_pipeline(settings, store, fake)
        slow_estimates(fake, 10)
        task = asyncio.create_task(pipeline.run(job))
        await asyncio.sleep(0.5)
        task.cancel()
        results = await asyncio.gather(task, return_exceptions=True)
        assert isinstance(results[0], asyncio.CancelledError)

    asyncio.run(run())
    assert len(fake.decoded) <= 2  # concurrency 2: no segment scheduled after the cancel
    assert JobManifest.from_json(store.get_bytes(job.key)).state == JobState.running  # the worker decides what next


def test_a_stopping_worker_lets_the_segments_in_flight_finish_and_starts_no_other_step(store, settings):
    fake = FakeStages(store, frame_count=128 * 6)
    job = new_job(store)

    async def run():
        pipeline = make_pipeline(settings, store, fake)
        in_flight = slow_estimates(fake, 0.5)
        task = asyncio.create_task(pipeline.run(job))
        while len(in_flight) < 2:  # segments 0 and 1 in flight
            await asyncio.sleep(0.01)
        pipeline.stopping.set()
        with pytest.raises(JobHandedBack, match="before segment"):
            await task

    asyncio.run(run())
    assert sorted(fake.decoded) == [0, 1]  # both finished and stored; none started after
    assert all(store.exists(segment_keys(job.id, i)[1]) for i in (0, 1))
    assert not store.exists(segment_keys(job.id, 2)[0])


def test_a_stopping_worker_waits_out_no_outage(store, settings):
    fake = FakeStages(store, failures={"Lift": [rpc_error(grpc.StatusCode.UNAVAILABLE, "lifter down")] * 1000})

    async def run():
        pipeline = make_pipeline(settings, store, fake, budget_s=60)
        task = asyncio.create_task(pipeline.run(new_job(store)))
        while "Lift" not in [m for m, _ in fake.calls]:
            await asyncio.sleep(0.01)
        pipeline.stopping.set()
        with pytest.raises(JobHandedBack, match="calling lifter3d.Lift again"):
            await asyncio.wait_for(task, 2.0)  # not the 60 s outage budget

    asyncio.run(run())
