"""Several replicas of a stage share a job's calls: the supervised stack with two decoder and two
pose2d replicas, one job of six segments, and every replica's log shows calls it served."""
from __future__ import annotations

import pytest

from tests.conftest import TEST_DATA
from tests.faults.test_kill_parts import submit, wait_finished

pytestmark = [pytest.mark.faults]


def served(log: str, method: str) -> int:
    """Calls of ``method`` (e.g. ``/hpe3d.v1.Pose2D/Estimate``) a stage's log records as answered."""
    return sum(1 for line in log.splitlines() if f"{method} -> OK" in line)


def test_two_replicas_of_a_stage_both_serve_a_job(tmp_path):
    from hpe3d_cli.local_stack import LocalStack
    with LocalStack(workdir=tmp_path, replicas={"decoder": 2, "pose2d": 2}, startup_timeout_s=240,
                    settings_overrides={"segment_frames": 4, "stage_concurrency": 2}) as stack:
        assert stack.settings.pose2d_addr.count(",") == 1
        job = wait_finished(stack.gateway_urls, stack.api_key,
                            submit(stack.gateway_url, stack.api_key, TEST_DATA / "two_people_office_24f.mp4"))
        assert job["state"] == "succeeded", job.get("error")
        methods = {"decoder": "/hpe3d.v1.Decoder/Decode", "pose2d": "/hpe3d.v1.Pose2D/Estimate"}
        counts = {f"{part}-{i}": served(stack.process(f"{part}-{i}").spec.log_path.read_text(), method)
                  for part, method in methods.items() for i in (0, 1)}
    assert counts["pose2d-0"] + counts["pose2d-1"] == 6, counts
    assert all(n >= 1 for n in counts.values()), counts
