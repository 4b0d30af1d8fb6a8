"""The page's poses.json reader (gateway/api/static/js/poses.js) run under Node on small documents: the
2.0 fields, the fall-backs for older files (grounded or root-relative joints, angles from
joint_angles.csv) and the frame shown at a time. Skips where Node is not installed."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from gateway.api.web import STATIC

POSES_JS = STATIC / "js" / "poses.js"


def run_node(script: str) -> dict:
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed")
    program = f'import * as poses from "{POSES_JS.as_uri()}";\n{script}'
    done = subprocess.run([node, "--input-type=module", "-e", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def pose(offset_x: float, y0: float = 0.0) -> list[list[float]]:
    return [[offset_x + j * 0.01, y0 + j * 0.1, -2.0] for j in range(17)]


def test_schema_2_world_joints_angles_contacts_and_conventions():
    doc = {"schema_version": "2.0", "video": {"fps": 10, "still_image": False},
           "units": {"angles": "degrees"}, "camera": {"focal_px": 500},
           "angles": [{"name": "left_knee_flexion", "unit": "deg", "convention": "+ flexion"},
                      {"name": "right_knee_flexion", "unit": "deg", "convention": "+ flexion"}],
           "frames": [{"index": i, "timestamp_s": i / 10, "persons": [
               {"track_id": 3, "keypoints_3d_world": pose(i), "keypoints_3d_root_relative": pose(0),
                "angles_deg": {"left_knee_flexion": 10.0 + i, "right_knee_flexion": None},
                "angle_confidence": {"left_knee_flexion": 0.9, "right_knee_flexion": 0.0},
                "foot_contacts": {"left": True, "right": i == 1}}]} for i in range(3)]}
    out = run_node(f"""
const m = poses.parsePoses({json.dumps(doc)});
const t = m.tracks.get(3);
console.log(JSON.stringify({{source: m.source.name, frames: m.frameCount, still: m.still,
  pelvis1: poses.jointAt(t, 1, 0), left: Array.from(t.angles.left_knee_flexion),
  right: Array.from(t.angles.right_knee_flexion, (v) => Number.isNaN(v) ? null : v),
  contacts: Array.from(t.contacts.right), info: m.angleInfo, from: m.anglesFrom}}));
""")
    assert out["source"] == "world" and out["frames"] == 3 and out["still"] is False
    assert out["pelvis1"] == pytest.approx([1.0, 0.0, -2.0])  # the world joints, not the root-relative ones
    assert out["left"] == [10.0, 11.0, 12.0] and out["right"] == [None, None, None]
    assert out["contacts"] == [0, 1, 0]
    assert [a["convention"] for a in out["info"]] == ["+ flexion", "+ flexion"]
    assert out["from"] == "poses.json"


def test_root_relative_poses_are_set_side_by_side_on_the_floor():
    doc = {"schema_version": "1.0", "video": {"fps": 30},
           "frames": [{"index": 0, "timestamp_s": 0.0, "persons": [
               {"track_id": 0, "keypoints_3d_root_relative": pose(0, y0=-0.9)},
               {"track_id": 1, "keypoints_3d_root_relative": pose(0, y0=-0.9)}]}]}
    out = run_node(f"""
const m = poses.parsePoses({json.dumps(doc)});
console.log(JSON.stringify({{source: m.source.name, a: poses.jointAt(m.tracks.get(0), 0, 0),
  b: poses.jointAt(m.tracks.get(1), 0, 0), still: m.still, angles: m.angleInfo.length}}));
""")
    assert out["source"] == "root_relative" and out["still"] is True and out["angles"] == 0
    assert out["a"][1] == pytest.approx(0.0) and out["b"][1] == pytest.approx(0.0)  # lowest joint on the floor
    assert out["b"][0] - out["a"][0] == pytest.approx(1.0)  # 1 m apart


def test_angles_from_joint_angles_csv_when_poses_json_has_none():
    doc = {"video": {"fps": 30}, "frames": [
        {"index": i, "timestamp_s": i / 30, "persons": [{"track_id": 0, "keypoints_3d_grounded": pose(0)}]}
        for i in range(2)]}
    csv = "frame,timestamp_s,track_id,left_elbow_deg,right_elbow_deg\n0,0.0,0,150.5,\n1,0.033,0,151.0,149.0\n"
    out = run_node(f"""
const m = poses.parsePoses({json.dumps(doc)});
poses.addAnglesFromCsv(m, {json.dumps(csv)});
const t = m.tracks.get(0);
console.log(JSON.stringify({{source: m.source.name, from: m.anglesFrom, names: m.angleInfo.map((a) => a.name),
  right: Array.from(t.angles.right_elbow, (v) => Number.isNaN(v) ? null : v)}}));
""")
    assert out["source"] == "grounded" and out["from"] == "joint_angles.csv"
    assert out["names"] == ["left_elbow", "right_elbow"] and out["right"] == [None, 149.0]


def test_frame_at_time_is_the_last_frame_started():
    out = run_node("""
const times = [0, 0.1, 0.2, 0.3];
console.log(JSON.stringify([-1, 0, 0.05, 0.1, 0.299, 0.29995, 0.3, 9].map((t) => poses.frameAtTime(times, t))));
""")
    assert out == [0, 0, 0, 1, 2, 3, 3, 3]  # within 0.1 ms of a frame counts as that frame


def test_per_frame_camera_is_read_for_the_frustum():
    turned = [0.9990482, 0.0, 0.0436194, 0.0]   # 5 degrees about y
    doc = {"schema_version": "2.0", "video": {"fps": 10, "width": 640, "height": 360},
           "camera": {"focal_px": 500, "focal_from_prior": False, "pitch_deg": 10.0, "height_m": 1.6},
           "frames": [{"index": i, "timestamp_s": i / 10,
                       "camera": {"rotation": [1, 0, 0, 0] if i == 0 else turned, "focal_px": 500 + 50 * i,
                                  "quality": "tracked" if i < 2 else "held"},
                       "persons": [{"track_id": 0, "keypoints_3d_world": pose(0)}]} for i in range(3)]}
    without = {**doc, "frames": [{**f, "camera": None} for f in doc["frames"]]}
    out = run_node(f"""
const m = poses.parsePoses({json.dumps(doc)});
const none = poses.parsePoses({json.dumps(without)});
const c = m.cameraPath;
console.log(JSON.stringify({{centre: c.centre, size: [c.width, c.height], rotation: Array.from(c.rotation),
  focal: Array.from(c.focal), quality: c.quality, none: none.cameraPath}}));
""")
    assert out["centre"] == [0, 1.6, 0] and out["size"] == [640, 360]   # the camera stands at its height
    assert out["rotation"] == pytest.approx([1, 0, 0, 0] + turned * 2, abs=1e-6)
    assert out["focal"] == [500, 550, 600] and out["quality"] == ["tracked", "tracked", "held"]
    assert out["none"] is None
