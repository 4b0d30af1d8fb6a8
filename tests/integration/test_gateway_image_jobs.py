"""What the job pipeline does with the probe's facts: photos and 1-frame videos keep single-frame
tracks, the frame rate reaches the lifter, and the probe's warnings become job warnings (fake
stage stubs, real SeaweedFS store)."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from gateway.api.views import JobView
from gateway.jobs.manifest import JobManifest, JobState
from hpe3d.v1 import common_pb2
from tests.integration.test_jobs_pipeline import FakeStages, make_pipeline, new_job


@dataclass
class ProbedStages(FakeStages):
    """FakeStages whose probe answers ``info`` and which keeps the requests of Lift and Render."""

    info: common_pb2.VideoInfo = field(default_factory=common_pb2.VideoInfo)
    requests: dict[str, object] = field(default_factory=dict)

    nobody: bool = False  # pose2d finds no person in any frame

    async def Probe(self, request, metadata=(), timeout=None):
        self._enter("Probe", metadata)
        return self.info

    async def Estimate(self, request, metadata=(), timeout=None):
        reply = await super().Estimate(request, metadata, timeout)
        if self.nobody:
            reply.frames_with_person = 0
        return reply

    def Lift(self, request, metadata=(), timeout=None):
        self.requests["Lift"] = request
        return super().Lift(request, metadata, timeout)

    def Render(self, request, metadata=(), timeout=None):
        self.requests["Render"] = request
        return super().Render(request, metadata, timeout)


def _run(store, settings, info: common_pb2.VideoInfo, nobody: bool = False) -> tuple[JobManifest, ProbedStages, list]:
    fake = ProbedStages(store, frame_count=info.frame_count, duration_s=info.duration_s, info=info, nobody=nobody)
    job = new_job(store)
    events: list = []
    result = asyncio.run(make_pipeline(settings, store, fake, events).run(job))
    return result, fake, events


def test_image_job_lifts_single_frame_tracks_and_tells_the_renderer(store, settings):
    photo = common_pb2.VideoInfo(width=800, height=600, fps=0.0, frame_count=1, duration_s=0.0, codec="mjpeg",
                                 still_image=True, announced_frame_count=1, timestamps_s=[0.0])
    result, fake, _ = _run(store, settings, photo)
    assert result.state == JobState.succeeded, result.error
    assert result.video.still_image and result.video.frame_count == 1
    assert fake.requests["Lift"].min_track_frames == 1
    assert fake.requests["Render"].video_info.still_image
    assert result.progress["decoder"].done == 1


def test_one_frame_video_also_keeps_single_frame_tracks(store, settings):
    clip = common_pb2.VideoInfo(width=640, height=360, fps=25.0, frame_count=1, duration_s=0.04, codec="h264")
    result, fake, _ = _run(store, settings, clip)
    assert result.state == JobState.succeeded, result.error
    assert fake.requests["Lift"].min_track_frames == 1 and fake.requests["Lift"].fps == 25.0


def test_video_job_passes_fps_and_the_server_default_track_length(store, settings):
    clip = common_pb2.VideoInfo(width=640, height=360, fps=29.97, frame_count=200, duration_s=6.7, codec="h264")
    result, fake, _ = _run(store, settings, clip)
    assert result.state == JobState.succeeded, result.error
    assert fake.requests["Lift"].min_track_frames == 0
    assert abs(fake.requests["Lift"].fps - 29.97) < 1e-9
    assert result.warnings == []


def test_probe_warnings_become_job_warnings_in_the_view_and_the_done_event(store, settings):
    warning = "truncated: 40 of 128 announced frames were missing"
    clip = common_pb2.VideoInfo(width=640, height=360, fps=30.0, frame_count=88, duration_s=2.9, codec="h264",
                                announced_frame_count=128, warnings=[warning])
    result, _, events = _run(store, settings, clip)
    assert result.state == JobState.succeeded, result.error
    assert result.warnings == [warning] and result.video.announced_frame_count == 128
    assert JobView.of(result).warnings == [warning]
    stored = JobManifest.from_json(store.get_bytes(result.key))
    assert stored.warnings == [warning]
    done = [e for e in events if e.name == "done"]
    assert done and done[-1].payload.warnings == [warning]


def test_photo_with_nobody_fails_in_pose2d_saying_what_was_searched(store, settings):
    photo = common_pb2.VideoInfo(width=800, height=600, frame_count=1, codec="png", still_image=True)
    result, fake, _ = _run(store, settings, photo, nobody=True)
    assert result.state == JobState.failed
    assert result.error.stage == "pose2d" and result.error.code == "FAILED_PRECONDITION"
    assert result.error.message == (f"no person found: searched the image for up to {settings.max_persons} "
                                    "persons; nobody was detected")
    assert "Lift" not in [m for m, _ in fake.calls]


def test_video_with_nobody_names_the_frames_searched(store, settings):
    clip = common_pb2.VideoInfo(width=640, height=360, fps=30.0, frame_count=200, duration_s=6.7, codec="h264")
    result, _, _ = _run(store, settings, clip, nobody=True)
    assert result.state == JobState.failed
    assert result.error.message.startswith("no person found: searched 200 frames for up to ")
