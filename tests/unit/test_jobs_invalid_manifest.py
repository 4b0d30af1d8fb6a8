"""A stored manifest that fails validation: the one-line reason, and the failed job readers are shown
(every field that validates kept, the job failed with the reason)."""
from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from gateway.jobs.manifest import INVALID_MANIFEST, InvalidManifest, JobManifest, JobState, new_job_id


def invalid(job_id: str, data: bytes) -> InvalidManifest:
    with pytest.raises(ValidationError) as caught:
        JobManifest.from_json(data)
    return InvalidManifest.of(job_id, data, caught.value)


def test_an_out_of_range_option_names_the_field_and_the_value_and_keeps_the_rest():
    job = JobManifest(id=new_job_id(), input_key="jobs/x/input/a.mp4", input_name="a.mp4", input_bytes=7,
                      attempt=3, state=JobState.running, owner="w1")
    stored = json.loads(job.to_json())
    stored["options"]["max_persons"] = 99
    error = invalid(job.id, json.dumps(stored).encode())
    assert error.reason == "options.max_persons: Input should be less than or equal to 16 (got 99)"
    failed = error.failed_job()
    assert failed.state == JobState.failed and failed.owner == "" and failed.lease_until is None
    assert (failed.id, failed.input_key, failed.input_name, failed.input_bytes, failed.attempt) == (
        job.id, job.input_key, "a.mp4", 7, 3)
    assert failed.created_at == job.created_at
    assert failed.options.max_persons == 0  # the invalid field takes its default
    assert failed.error.stage == "jobs" and failed.error.code == INVALID_MANIFEST
    assert failed.error.message.endswith(error.reason) and f"jobs/{job.id}/job.json" in failed.error.message
    assert JobManifest.from_json(failed.to_json()) == failed  # a valid record that can be stored


def test_unreadable_or_foreign_content_still_reads_as_a_failed_job():
    job_id = new_job_id()
    for data in (b"{not json", b"[1, 2]", b'{"id": "x", "state": "sleeping"}'):
        failed = invalid(job_id, data).failed_job()
        assert failed.id == job_id and failed.state == JobState.failed and failed.input_key == ""
    assert "Invalid JSON" in invalid(job_id, b"{not json").reason
    many = invalid(job_id, b'{"state": "sleeping", "attempt": "x", "segment_count": "y", "input_bytes": "z"}')
    assert many.reason.endswith("(and 4 more)")  # id, input_key and input_name are missing too
