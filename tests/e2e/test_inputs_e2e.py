"""Inputs that are not a plain whole video, through the whole local stack and the REST API: a clip
trimmed the way a phone trims (edit list), a photo of several people, and truncated files."""
from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_pipeline_e2e import follow_to_done, gateway, submit, wait_finished  # noqa: F401 - fixture

pytestmark = pytest.mark.e2e


def test_trimmed_clip_photo_and_truncated_files(gateway: httpx.Client, tmp_path: Path):
    """A phone-style trim (edit list), a photo of four people, and truncated files, made here from
    the office clip: the trim and the photo give 2D and 3D for what they show, a file cut before its
    index is refused with that reason, and a file cut after it runs with a warning."""
    import cv2

    from tests.video_fixtures import (PEOPLE_CLIP, cut_copy, encode_h264, read_frames, side_by_side_people,
                                      truncate)
    frames = read_frames(PEOPLE_CLIP)
    source = encode_h264(tmp_path / "source.mp4", frames, gop=8)
    cut_copy(source, tmp_path / "trimmed.mp4", 11 / 30)
    cut_short = truncate(encode_h264(tmp_path / "faststart.mp4", frames * 2, gop=8, faststart=True),
                         tmp_path / "cut_short.mp4", 0.5)
    no_index = truncate(source, tmp_path / "no_index.mp4", 0.6)
    assert cv2.imwrite(str(tmp_path / "group.png"), side_by_side_people(frames, 0, 20))

    refused = submit(gateway, "no_index.mp4", no_index.read_bytes())
    assert refused.status_code == 422 and refused.json()["detail"].startswith("truncated: the index is missing")
    jobs = {"trimmed": submit(gateway, "trimmed.mp4", (tmp_path / "trimmed.mp4").read_bytes()),
            "cut_short": submit(gateway, "cut_short.mp4", cut_short.read_bytes()),
            "photo": gateway.post("/v1/jobs", data={"max_persons": "4"}, files={
                "file": ("group.png", io.BytesIO((tmp_path / "group.png").read_bytes()), "image/png")})}
    assert all(r.status_code == 202 for r in jobs.values()), {k: r.text for k, r in jobs.items()}
    ids = {name: r.json()["id"] for name, r in jobs.items()}
    _, cut_done = follow_to_done(gateway, ids["cut_short"])
    done = {name: wait_finished(gateway, job_id) for name, job_id in ids.items()}
    assert all(job["state"] == "succeeded" for job in done.values()), {k: j.get("error") for k, j in done.items()}

    def poses_of(job: dict) -> dict:
        url = next(a["url"] for a in job["links"]["artifacts"] if a["name"] == "poses.json")
        return gateway.get(url).json()

    trimmed = done["trimmed"]
    assert trimmed["video"]["frame_count"] == 13 and trimmed["warnings"] == []
    frames_2d = [any(p["keypoints_2d"] for p in f["persons"]) for f in poses_of(trimmed)["frames"]]
    assert len(frames_2d) == 13 and sum(frames_2d) >= 0.9 * 13

    photo = done["photo"]
    assert photo["video"]["still_image"] and photo["video"]["frame_count"] == 1
    names = {a["name"] for a in photo["links"]["artifacts"]}
    assert "render.png" in names and "render.mp4" not in names
    persons = poses_of(photo)["frames"][0]["persons"]
    assert len(persons) >= 3  # four people, one of them largely hidden behind another
    assert all(p["keypoints_2d"] and p["keypoints_3d_world"] for p in persons)

    warning = done["cut_short"]["warnings"]
    assert len(warning) == 1 and warning[0].startswith("truncated: ") and "of 48 announced frames" in warning[0]
    assert cut_done["warnings"] == warning
