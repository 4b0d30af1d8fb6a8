"""The whole local stack (SeaweedFS, Triton host, the four stages, the gateway) through the REST API:
one good clip and several bad inputs submitted together."""
from __future__ import annotations

import io
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_DATA, bearer

pytestmark = pytest.mark.e2e

GOOD = TEST_DATA / "two_people_office_24f.mp4"
NOBODY = TEST_DATA / "nobody_24f.mp4"
TRUNCATED = TEST_DATA / "truncated.mp4"
FINISHED = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def gateway():
    from hpe3d_cli.local_stack import LocalStack
    with LocalStack(startup_timeout_s=240) as stack:
        with httpx.Client(base_url=stack.gateway_url, headers=bearer(stack.api_key), timeout=60) as client:
            yield client


def submit(client: httpx.Client, name: str, data: bytes) -> httpx.Response:
    return client.post("/v1/jobs", files={"file": (name, io.BytesIO(data), "video/mp4")})


def follow_to_done(client: httpx.Client, job_id: str, timeout_s: float = 600) -> tuple[list[dict], dict]:
    """Progress events and the done event of a job, read from its SSE stream."""
    progress, event = [], None
    with client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=httpx.Timeout(30, read=timeout_s)) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line.startswith("event: "):
                event = line[len("event: "):]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: "):])
                if event == "done":
                    return progress, data
                progress.append(data)
    raise AssertionError("event stream ended without a done event")


def wait_finished(client: httpx.Client, job_id: str, timeout_s: float = 600) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in FINISHED:
            return job
        time.sleep(1)
    raise AssertionError(f"job {job_id} not finished after {timeout_s}s")


def test_good_clip_succeeds_beside_bad_inputs(gateway: httpx.Client, tmp_path: Path):
    import av

    good = submit(gateway, GOOD.name, GOOD.read_bytes())
    assert good.status_code == 202, good.text
    good_id = good.json()["id"]
    assert good.headers["location"] == f"/v1/jobs/{good_id}"

    empty = submit(gateway, "empty.mp4", b"")
    assert empty.status_code == 422 and "empty upload" in empty.json()["detail"]
    text = submit(gateway, "notes.mp4", b"this is a text file, not a video\n" * 20)
    assert text.status_code == 422 and "not a video" in text.json()["detail"].lower()
    bad = {
        "text": text.json()["job"]["id"],
        "nobody": submit(gateway, NOBODY.name, NOBODY.read_bytes()).json()["id"],
        "truncated": submit(gateway, TRUNCATED.name, TRUNCATED.read_bytes()).json()["id"],
    }

    with ThreadPoolExecutor(max_workers=1) as pool:
        bad_results = pool.submit(lambda: {k: wait_finished(gateway, v) for k, v in bad.items()})
        progress, done = follow_to_done(gateway, good_id)
        finished = bad_results.result()

    assert done["state"] == "succeeded", done
    assert progress and {"decoder", "pose2d", "lifter3d", "renderer"} <= set(progress[-1]["progress"])
    job = gateway.get(f"/v1/jobs/{good_id}").json()
    frame_count = job["video"]["frame_count"]
    assert frame_count == 24 and job["progress"]["pose2d"]["done"] == frame_count
    artifacts = {a["name"]: a["url"] for a in job["links"]["artifacts"]}
    assert {"render.mp4", "poses.json", "thumbnail.jpg", "joint_angles.csv"} <= set(artifacts)
    assert any(name.startswith("person_") and name.endswith(".bvh") for name in artifacts)

    poses = gateway.get(artifacts["poses.json"]).json()
    frames = poses["frames"]
    assert len(frames) == frame_count
    with_2d = sum(any(p["keypoints_2d"] for p in f["persons"]) for f in frames)
    assert with_2d >= 0.9 * frame_count
    assert poses["schema_version"] == "2.0"
    assert all(any(p["keypoints_3d_world"] for p in f["persons"]) for f in frames)

    mp4 = gateway.get(artifacts["render.mp4"])
    assert mp4.status_code == 200 and mp4.headers["content-type"] == "video/mp4"
    (tmp_path / "render.mp4").write_bytes(mp4.content)
    with av.open(str(tmp_path / "render.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert sum(1 for _ in container.decode(stream)) == frame_count
    part = gateway.get(artifacts["render.mp4"], headers={"Range": "bytes=0-1023"})
    assert part.status_code == 206 and len(part.content) == 1024
    assert part.headers["content-range"] == f"bytes 0-1023/{len(mp4.content)}"

    text = finished["text"]
    assert text["state"] == "failed" and "not a video" in text["error"]["message"].lower()
    nobody = finished["nobody"]
    assert nobody["state"] == "failed" and "no person found" in nobody["error"]["message"].lower()
    # cut after its index (a faststart MP4 cut to half its bytes): the job runs on the 48 frames the file
    # holds, finds the person in each, and says how many announced frames were missing
    truncated = finished["truncated"]
    assert truncated["state"] == "succeeded", truncated
    assert truncated["video"]["frame_count"] == 48
    assert truncated["warnings"] == ["truncated: 39 of 87 announced frames were missing; the job uses the 48 "
                                     "frames the file holds"], truncated["warnings"]
    truncated_poses = gateway.get(next(a["url"] for a in truncated["links"]["artifacts"]
                                       if a["name"] == "poses.json")).json()
    assert len(truncated_poses["frames"]) == 48 and truncated["warnings"][0] in truncated_poses["warnings"]
    assert all(any(p["keypoints_3d_world"] for p in f["persons"]) for f in truncated_poses["frames"])

    assert gateway.get("/readyz").status_code == 200


def test_finished_job_events_replay_and_delete(gateway: httpx.Client):
    job_id = submit(gateway, NOBODY.name, NOBODY.read_bytes()).json()["id"]
    wait_finished(gateway, job_id)
    progress, done = follow_to_done(gateway, job_id, timeout_s=30)
    assert done["state"] == "failed" and progress
    assert job_id in [j["id"] for j in gateway.get("/v1/jobs").json()["jobs"]]
    assert gateway.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert gateway.get(f"/v1/jobs/{job_id}").status_code == 404
