"""Gateway building blocks without servers: manifest round trip, segment planning, Range parsing."""
from __future__ import annotations

import pytest

from gateway.jobs.manifest import (JobError, JobManifest, JobOptions, JobState, StoredArtifact, VideoSummary,
                              is_job_id, new_job_id, safe_filename, segment_keys)
from gateway.api.ranges import ByteRange, RangeNotSatisfiable, parse_range
from gateway.worker.segments import SegmentPlan, plan_segments


def test_manifest_round_trip_keeps_every_field():
    job = JobManifest(id=new_job_id(), options=JobOptions(max_persons=3, working_size=320, render=False),
                      input_key="jobs/x/input/a.mp4", input_name="a.mp4", input_bytes=1234,
                      state=JobState.failed, video=VideoSummary(width=640, height=360, fps=25.0, frame_count=50,
                                                                duration_s=2.0, codec="h264"),
                      error=JobError(stage="pose2d", code="FAILED_PRECONDITION", message="no person found"),
                      artifacts={"render.mp4": StoredArtifact(key="k", content_type="video/mp4", size_bytes=9)})
    job.progress["decoder"].done = 50
    job.owner, job.attempt = "worker-1", 2
    again = JobManifest.from_json(job.to_json())
    assert again == job
    assert again.schema_version == 2
    assert again.progress["decoder"].done == 50
    assert set(again.progress) == {"decoder", "pose2d", "lifter3d", "renderer"}


def test_schema1_manifest_reads_in_todays_stage_names():
    old = JobManifest(id=new_job_id(), input_key="k", input_name="a.mp4").model_dump(mode="json")
    old.update(schema_version=1, progress={"decode": {"done": 5, "total": 9}, "pose2d": {"done": 5, "total": 9},
                                           "lift": {"done": 0, "total": 0}, "render": {"done": 0, "total": 0}},
               error={"stage": "lift", "code": "UNAVAILABLE", "message": "down"})
    del old["attempt"], old["owner"], old["lease_until"]
    job = JobManifest.model_validate(old)
    assert set(job.progress) == {"decoder", "pose2d", "lifter3d", "renderer"} and job.progress["decoder"].done == 5
    assert job.error.stage == "lifter3d" and job.schema_version == 2 and job.attempt == 1


def test_a_running_job_shows_running_only_while_its_owner_lease_holds():
    from datetime import datetime, timedelta, timezone
    now = datetime.now(timezone.utc)
    job = JobManifest(id=new_job_id(), input_key="k", input_name="a.mp4", state=JobState.running,
                      owner="w1", lease_until=now + timedelta(seconds=30))
    assert job.shown_state(now) == JobState.running
    assert job.shown_state(now + timedelta(seconds=31)) == JobState.recovering
    job.owner = ""
    assert job.shown_state(now) == JobState.recovering
    job.state = JobState.queued
    assert job.shown_state(now) == JobState.queued


def test_job_ids_and_filenames_are_safe_for_keys():
    assert is_job_id(new_job_id())
    assert not is_job_id("../etc") and not is_job_id("ABC")
    assert safe_filename("../../evil dir/My Clip (1).mp4") == "My_Clip_1_.mp4"
    assert safe_filename("") == "upload.bin"
    assert segment_keys("j", 7) == ("jobs/j/segments/00007/frames.pb", "jobs/j/segments/00007/poses2d.pb")


def test_segments_cover_all_frames_with_remainder_last():
    plans = plan_segments(300, 128)
    assert plans == [SegmentPlan(0, 0, 128), SegmentPlan(1, 128, 128), SegmentPlan(2, 256, 44)]
    assert plan_segments(128, 128) == [SegmentPlan(0, 0, 128)]
    assert plan_segments(0, 128) == []
    with pytest.raises(ValueError):
        plan_segments(10, 0)


@pytest.mark.parametrize("header, expected", [
    (None, None),
    ("bytes=0-99", ByteRange(0, 99)),
    ("bytes=10-", ByteRange(10, 999)),
    ("bytes=-100", ByteRange(900, 999)),
    ("bytes=990-5000", ByteRange(990, 999)),
    ("bytes=-5000", ByteRange(0, 999)),
])
def test_range_parsing(header, expected):
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5-2", "items=0-1", "bytes=0-1,5-6", "bytes=a-b", "bytes=-0",
                                    "bytes=10"])
def test_unsatisfiable_ranges(header):
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 1000)


def test_content_range_header():
    assert ByteRange(0, 99).content_range(1000) == "bytes 0-99/1000"
    assert ByteRange(0, 99).length == 100
