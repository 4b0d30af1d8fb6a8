"""``hpe3d lift --bvh`` on real 2D keypoints with the shipped lifter: the job's poses.json schema, and BVH files
whose forward kinematics (read by bvhio, independent of our writer) lands on the poses.json world joints."""
import json
from pathlib import Path

import bvhio
import jsonschema
import numpy as np

from hpe3d_cli.cli import main
from services.common.skeletons import H36M17, blazepose33_to_coco17

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
SCHEMA = json.loads((ROOT / "services" / "renderer" / "poses_schema.json").read_text())


def keypoint_file(path: Path) -> None:
    """MediaPipe's 2D of tests/data/two_people_office_24f.mp4 written as our poses.json 2D input (24 fps
    claimed, so the frame time is checked against the file's rate, not a default)."""
    doc = json.loads((DATA / "mediapipe_pose_24f.json").read_text())
    coco = blazepose33_to_coco17(np.array(doc["frames"], np.float32)[..., :3])
    path.write_text(json.dumps({
        "schema_version": "2.0", "video": {"width": 640, "height": 360, "fps": 24.0},
        "frames": [{"index": i, "timestamp_s": i / 24, "persons": [{"track_id": 3, "keypoints_2d": kp.tolist()}]}
                   for i, kp in enumerate(coco)]}))


def test_lift_writes_the_job_schema_and_bvh_on_the_world_joints(tmp_path, capsys):
    src, out, bvh_dir = tmp_path / "in.json", tmp_path / "out" / "poses.json", tmp_path / "bvh"
    keypoint_file(src)
    assert main(["lift", str(src), "-o", str(out), "--bvh", str(bvh_dir)]) == 0
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, SCHEMA)
    assert doc["video"]["fps"] == 24.0 and doc["camera"]["focal_px"] > 0 and doc["warnings"] == []
    world = np.array([f["persons"][0]["keypoints_3d_world"] for f in doc["frames"]])
    assert world.shape == (24, 17, 3) and np.isfinite(world).all()
    assert any(v is not None for v in doc["frames"][10]["persons"][0]["angles_deg"].values())
    path = bvh_dir / "person_3.bvh"
    assert sorted(p.name for p in bvh_dir.iterdir()) == ["person_3.bvh"]
    container = bvhio.readAsBvh(str(path))
    assert container.FrameCount == 24 and abs(container.FrameTime - 1 / 24) < 1e-6
    root = bvhio.readAsHierarchy(str(path))
    joints = {joint.Name: joint for joint, _, _ in root.layout()}
    error = 0.0
    for frame in range(24):
        root.loadPose(frame, recursive=True)
        fk = np.array([list(joints[name].PositionWorld) for name in H36M17.joints])
        error = max(error, float(np.linalg.norm(fk - world[frame], axis=-1).max()))
    assert error < 0.01, f"largest joint error {error * 100:.2f} cm"
    assert f"wrote {path}" in capsys.readouterr().out
