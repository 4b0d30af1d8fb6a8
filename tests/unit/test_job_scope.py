"""The job-scope rules on their own (the stages applying them: tests/contract/test_stage_security.py)."""
import pytest

from hpe3d.v1 import common_pb2, lifter3d_pb2, pose2d_pb2, renderer_pb2
from services.common.job_scope import JobScope, OutsideJob, check_job_scope, job_prefix, object_refs


class FakeContext:
    def __init__(self, job_id: str = ""):
        self._metadata = (("x-job-id", job_id),) if job_id else ()

    def invocation_metadata(self):
        return self._metadata


def ref(key: str, bucket: str = "") -> common_pb2.ObjectRef:
    return common_pb2.ObjectRef(bucket=bucket, key=key)


def test_object_refs_finds_nested_and_repeated_refs_only():
    request = pose2d_pb2.EstimateRequest(segment=common_pb2.SegmentRef(job_id="a", frames=ref("jobs/a/f.pb")),
                                         output=ref("jobs/a/p.pb"))
    assert [(w, r.key) for w, r in object_refs(request)] == [("segment.frames", "jobs/a/f.pb"), ("output", "jobs/a/p.pb")]
    lift = lifter3d_pb2.LiftRequest(job_id="a", segments=[ref("jobs/a/0.pb"), ref("jobs/b/1.pb")],
                                    frames=[common_pb2.FramePoses2D(frame_index=0)])
    assert [w for w, _ in object_refs(lift)] == ["segments[0]", "segments[1]"]


@pytest.mark.parametrize("key", ["jobs/a/x.pb", "jobs/a/segments/00001/frames.pb", "jobs/a/output/poses.json"])
def test_keys_inside_the_job_pass(key):
    JobScope("a", "hpe3d").check_key(key, "output")


@pytest.mark.parametrize("key, reason", [
    ("jobs/b/x.pb", "outside job 'a'"),
    ("jobs/ab/x.pb", "outside job 'a'"),
    ("jobs/a/", "outside job 'a'"),
    ("tests/a/x.pb", "outside job 'a'"),
    ("jobs/a/../b/output/poses.json", "'..'"),
    ("jobs/a//x.pb", "empty"),
    ("jobs/a/./x.pb", "'.'"),
    ("jobs/a/..", "'..'"),
    ("jobs/a/x\\..\\..\\b", "backslash"),
    ("jobs/a/x\n.pb", "control"),
])
def test_keys_outside_the_job_or_climbing_out_are_refused(key, reason):
    with pytest.raises(OutsideJob) as err:
        JobScope("a", "hpe3d").check_key(key, "output")
    assert reason in str(err.value) and repr(key) in str(err.value)


def test_prefixes_may_name_the_job_folder_itself():
    JobScope("a", "hpe3d").check_key("jobs/a/", "output_prefix", prefix=True)
    with pytest.raises(OutsideJob):
        JobScope("a", "hpe3d").check_key("jobs/", "output_prefix", prefix=True)


def test_job_comes_from_field_or_metadata_and_both_must_agree():
    assert JobScope.of_call(FakeContext("a"), "hpe3d").job_id == "a"
    assert JobScope.of_call(FakeContext(), "hpe3d", "a").job_id == "a"
    assert JobScope.of_call(FakeContext("a"), "hpe3d", "a").job_id == "a"
    with pytest.raises(OutsideJob, match="says 'b'"):
        JobScope.of_call(FakeContext("b"), "hpe3d", "a")
    for bad in ("../a", "a/b", "", "x" * 129, "-a"):
        if bad:
            with pytest.raises(OutsideJob, match="not a valid job id"):
                JobScope.of_call(FakeContext(), "hpe3d", bad)


def test_a_request_without_objects_needs_no_job_but_one_with_objects_does():
    check_job_scope(lifter3d_pb2.LiftRequest(frames=[common_pb2.FramePoses2D()]), FakeContext(), "hpe3d")
    with pytest.raises(OutsideJob, match="names no job"):
        check_job_scope(lifter3d_pb2.LiftRequest(segments=[ref("jobs/a/0.pb")]), FakeContext(), "hpe3d")


def test_renderer_prefix_and_bucket_fields_are_checked():
    request = renderer_pb2.RenderRequest(job_id="a", output_prefix="jobs/a/output", bucket="hpe3d")
    check_job_scope(request, FakeContext(), "hpe3d", "a", prefixes={"output_prefix": request.output_prefix},
                    buckets={"bucket": request.bucket})
    with pytest.raises(OutsideJob, match="output_prefix 'jobs/b/output/'"):
        check_job_scope(request, FakeContext(), "hpe3d", "a", prefixes={"output_prefix": "jobs/b/output"})
    with pytest.raises(OutsideJob, match="'other'"):
        check_job_scope(request, FakeContext(), "hpe3d", "a", buckets={"bucket": "other"})
    with pytest.raises(OutsideJob, match="video bucket 'other'"):
        check_job_scope(renderer_pb2.RenderRequest(job_id="a", video=ref("jobs/a/v.mp4", "other")),
                        FakeContext(), "hpe3d", "a")


def test_job_prefix():
    assert job_prefix("0123abcd") == "jobs/0123abcd/"
