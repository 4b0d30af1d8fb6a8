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


def panned_photo_clip(path: Path, frames: int = 45, pan_px: int = 120,
                      size: tuple[int, int] = (1100, 660)) -> tuple[Path, list[list[float]], list[int]]:
    """A clip made from tests/data/aic_three_persons.jpg (950x641, three annotated persons): the photo
    on a grey ``size`` canvas, moved right by ``pan_px`` over the clip as a panning camera would move
    it. Returns the clip, the annotated boxes (x0, y0, x1, y1) and each frame's x offset."""
    import cv2
    import numpy as np

    from tests.video_fixtures import encode_h264

    meta = json.loads((TEST_DATA / "aic_three_persons.json").read_text())
    photo = cv2.imread(str(TEST_DATA / meta["image"]))
    h, w = photo.shape[:2]
    offsets = [20 + round(pan_px * i / (frames - 1)) for i in range(frames)]
    top = (size[1] - h) // 2
    video = []
    for x in offsets:
        canvas = np.full((size[1], size[0], 3), 110, np.uint8)
        canvas[top:top + h, x:x + w] = photo
        video.append(canvas)
    boxes = [[bx, by + top, bx + bw, by + bh + top] for bx, by, bw, bh in meta["person_boxes_xywh"]]
    return encode_h264(path, video), boxes, offsets


def test_every_person_of_a_panned_group_photo_is_tracked(gateway: httpx.Client, tmp_path: Path):
    """Three people (a football photo, tests/data/aic_three_persons.jpg) panned across a 1100x660 frame
    over 1.5 s: with the defaults each is found, lifted and kept under one id through the clip."""
    import numpy as np

    clip, boxes, offsets = panned_photo_clip(tmp_path / "panned_group.mp4")
    job = submit(gateway, clip.name, clip.read_bytes())
    assert job.status_code == 202, job.text
    _, done = follow_to_done(gateway, job.json()["id"])
    assert done["state"] == "succeeded", done
    job = gateway.get(f"/v1/jobs/{job.json()['id']}").json()
    artifacts = {a["name"]: a["url"] for a in job["links"]["artifacts"]}
    poses = gateway.get(artifacts["poses.json"]).json()
    frames = poses["frames"]
    assert len(frames) == len(offsets)
    for person, box in enumerate(boxes):
        ids = []
        for frame, dx in zip(frames, offsets):
            x0, y0, x1, y1 = box[0] + dx, box[1], box[2] + dx, box[3]
            best, best_inside = None, 0.0
            for p in frame["persons"]:
                kp = np.array(p["keypoints_2d"] or np.zeros((17, 3)))
                seen = kp[kp[:, 2] > 0.5]
                if len(seen) < 6:
                    continue
                inside = np.mean((seen[:, 0] >= x0) & (seen[:, 0] <= x1) & (seen[:, 1] >= y0) & (seen[:, 1] <= y1))
                if inside > best_inside:
                    best, best_inside = p, inside
            if best is not None and best_inside >= 0.8:
                assert best["keypoints_3d_world"] is not None, f"person {person} has no 3D"
                ids.append(best["track_id"])
        assert len(ids) >= 0.9 * len(frames), f"annotated person {person} found in {len(ids)} of {len(frames)} frames"
        assert len(set(ids)) == 1, f"annotated person {person} changed id: {ids}"
    assert len({p["track_id"] for f in frames for p in f["persons"] if p["keypoints_3d_world"]}) >= 3
    assert sum(name.startswith("person_") and name.endswith(".bvh") for name in artifacts) >= 3
