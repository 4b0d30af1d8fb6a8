"""BVH parsing, forward kinematics and the BVH -> COCO-17 / Human3.6M-17 mapping."""
import subprocess
from pathlib import Path

import numpy as np
import pytest

from services.common.skeletons import COCO17, H36M17
from training import mocap

# A Bandai-shaped skeleton. Like the real files, bones run along each joint's local +x; the Hips carry a
# 90 deg Z rotation so that local x = world up, local y = forward (-X here), local z = the actor's left (+Z).
_JOINTS = [  # name, parent name, offset (cm, in the parent's local frame)
    ("joint_Root", None, (0, 0, 0)),
    ("Hips", "joint_Root", (0, 90, 0)),
    ("Spine", "Hips", (15, 0, 0)), ("Chest", "Spine", (10, 0, 0)), ("Neck", "Chest", (20, 0, 0)),
    ("Head", "Neck", (7, 0, 0)),
    ("Shoulder_L", "Chest", (17, 0, 4)), ("UpperArm_L", "Shoulder_L", (0, 0, 14)),
    ("LowerArm_L", "UpperArm_L", (0, 0, 26)), ("Hand_L", "LowerArm_L", (0, 0, 24)),
    ("Shoulder_R", "Chest", (17, 0, -4)), ("UpperArm_R", "Shoulder_R", (0, 0, -14)),
    ("LowerArm_R", "UpperArm_R", (0, 0, -26)), ("Hand_R", "LowerArm_R", (0, 0, -24)),
    ("UpperLeg_L", "Hips", (-5, 0, 9)), ("LowerLeg_L", "UpperLeg_L", (-40, 0, 0)),
    ("Foot_L", "LowerLeg_L", (-40, 0, 0)), ("Toes_L", "Foot_L", (-6, 10, 0)),
    ("UpperLeg_R", "Hips", (-5, 0, -9)), ("LowerLeg_R", "UpperLeg_R", (-40, 0, 0)),
    ("Foot_R", "LowerLeg_R", (-40, 0, 0)), ("Toes_R", "Foot_R", (-6, 10, 0)),
]
_CHANNELS = "Xposition Yposition Zposition Zrotation Xrotation Yrotation"


def _bvh_text(num_frames: int = 6, seed: int = 0) -> str:
    children = {}
    for name, parent, _ in _JOINTS:
        children.setdefault(parent, []).append(name)
    offsets = {n: o for n, _, o in _JOINTS}
    lines = ["HIERARCHY"]

    def emit(name: str, depth: int) -> None:
        pad = "  " * depth
        lines.append(f"{pad}{'ROOT' if depth == 0 else 'JOINT'} {name}")
        lines.append(pad + "{")
        lines.append(f"{pad}  OFFSET {' '.join(str(v) for v in offsets[name])}")
        lines.append(f"{pad}  CHANNELS 6 {_CHANNELS}")
        kids = children.get(name, [])
        for kid in kids:
            emit(kid, depth + 1)
        if not kids:
            lines.extend([pad + "  End Site", pad + "  {", pad + "    OFFSET 0 0 0", pad + "  }"])
        lines.append(pad + "}")

    emit("joint_Root", 0)
    rng = np.random.default_rng(seed)
    lines += ["MOTION", f"Frames: {num_frames}", "Frame Time: 0.0333333"]
    for f in range(num_frames):
        values = []
        for name, _, off in _JOINTS:
            rot = rng.uniform(-25, 25, 3) if name not in ("joint_Root",) else np.zeros(3)
            if name == "Hips":
                rot = np.array([90.0, 0.0, 0.0]) + rng.uniform(-5, 5, 3)
            pos = np.array(off, dtype=float) + (np.array([f * 3.0, 0, 0]) if name == "joint_Root" else 0)
            values += list(pos) + list(rot)
        lines.append(" ".join(f"{v:.5f}" for v in values))
    return "\n".join(lines) + "\n"


def _still_bvh() -> mocap.Bvh:
    """Rest pose (only the Hips' 90 deg Z rotation), one frame."""
    text = _bvh_text(1)
    bvh = mocap.parse_bvh(text)
    bvh.motion[:] = 0
    col = 0
    for j, name in enumerate(bvh.names):
        bvh.motion[:, col:col + 3] = bvh.offsets[j]
        if name == "Hips":
            bvh.motion[:, col + 3] = 90.0
        col += 6
    return bvh


def test_parse_structure():
    bvh = mocap.parse_bvh(_bvh_text(4))
    assert bvh.names == [n for n, _, _ in _JOINTS]
    assert [bvh.names[p] if p >= 0 else None for p in bvh.parents] == [p for _, p, _ in _JOINTS]
    assert bvh.channels[0] == tuple(_CHANNELS.split())
    assert bvh.motion.shape == (4, 6 * len(_JOINTS))
    assert bvh.frame_time == pytest.approx(1 / 30, rel=1e-4)


def test_parse_rejects_garbage():
    with pytest.raises(ValueError):
        mocap.parse_bvh("not a bvh")
    with pytest.raises(ValueError):
        mocap.parse_bvh(_bvh_text(2).replace("Frames: 2", "Frames: 3"))


def test_fk_rest_pose_in_metres_y_up():
    bvh = _still_bvh()
    pos, rot = mocap.forward_kinematics(bvh)
    i = bvh.index
    assert pos[0, i("Hips")] == pytest.approx([0, 0.9, 0])
    assert pos[0, i("Head")] == pytest.approx([0, 0.9 + 0.52, 0])  # spine chain straight up
    assert pos[0, i("UpperArm_L")][2] > 0 > pos[0, i("UpperArm_R")][2]  # left is +Z here
    assert pos[0, i("Foot_L")][1] == pytest.approx(0.85 - 0.8)
    assert np.allclose(rot[0, i("Head")] @ rot[0, i("Head")].T, np.eye(3))


def test_bone_lengths_constant_over_take():
    bvh = mocap.parse_bvh(_bvh_text(20, seed=3))
    pos, rot = mocap.forward_kinematics(bvh)
    for j, p in enumerate(bvh.parents):
        if p >= 0:
            length = np.linalg.norm(pos[:, j] - pos[:, p], axis=-1)
            assert np.ptp(length) < 1e-9
            assert length[0] == pytest.approx(np.linalg.norm(bvh.offsets[j]) / 100)
    h36 = mocap.bvh_to_h36m17(bvh.names, pos, rot)
    for a, b in RIGID_H36M_BONES:
        length = np.linalg.norm(h36[:, a] - h36[:, b], axis=-1)
        assert np.ptp(length) < 1e-9  # head points are rigid in the head frame, too


# H36M bones that are rigid in the Bandai skeleton (pelvis-spine, thorax-shoulder and thorax-nose span
# extra BVH joints, so their lengths legitimately change).
RIGID_H36M_BONES = [(0, 1), (1, 2), (2, 3), (0, 4), (4, 5), (5, 6), (7, 8), (9, 10),
                    (11, 12), (12, 13), (14, 15), (15, 16)]


def _body_frame(h36: np.ndarray):
    pelvis, thorax = h36[H36M17.index("pelvis")], h36[H36M17.index("thorax")]
    up = (thorax - pelvis) / np.linalg.norm(thorax - pelvis)
    left = h36[H36M17.index("left_hip")] - h36[H36M17.index("right_hip")]
    left = left - up * (left @ up)
    left /= np.linalg.norm(left)
    return pelvis, up, left, np.cross(left, up)


def test_mapping_shapes_and_left_right():
    bvh = _still_bvh()
    pos, rot = mocap.forward_kinematics(bvh)
    coco = mocap.bvh_to_coco17(bvh.names, pos, rot)[0]
    h36 = mocap.bvh_to_h36m17(bvh.names, pos, rot)[0]
    assert coco.shape == h36.shape == (17, 3)
    origin, up, left, forward = _body_frame(h36)
    assert forward == pytest.approx([-1, 0, 0], abs=1e-6)  # the synthetic actor faces -X
    for skel, pts in ((COCO17, coco), (H36M17, h36)):
        for l_idx, r_idx in zip(skel.left, skel.right):
            assert (pts[l_idx] - origin) @ left > 0.01, skel.joints[l_idx]
            assert (pts[r_idx] - origin) @ left < -0.01, skel.joints[r_idx]
    nose = coco[COCO17.index("nose")]
    head = pos[0, bvh.index("Head")]
    assert (nose - head) @ forward > 0.05  # face points are in front of the head joint
    top = h36[H36M17.index("head_top")]
    assert (top - head) @ up > 0.15
    assert h36[H36M17.index("thorax")] == pytest.approx(pos[0, bvh.index("Neck")])
    assert h36[H36M17.index("spine")] == pytest.approx(pos[0, bvh.index("Chest")])
    assert h36[0] == pytest.approx((coco[11] + coco[12]) / 2)


SHARED_MOCAP = Path(__file__).resolve().parents[3] / "shared" / "data" / "mocap"


def test_real_bandai_take(tmp_path):
    archive = SHARED_MOCAP / "bandai-namco-1.tar.xz"
    if not archive.exists():
        pytest.skip(f"{archive} is not present (development data beside the checkout)")
    member = "Bandai-Namco-Research-Motiondataset-1/data/dataset-1_bow_active_001.bvh"
    subprocess.run(["tar", "xJf", str(archive), "-C", str(tmp_path), member], check=True)
    bvh = mocap.load_bvh(tmp_path / member)
    assert bvh.channels[1] == ("Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation")
    pos, rot = mocap.forward_kinematics(bvh)
    h36 = mocap.bvh_to_h36m17(bvh.names, pos, rot)
    coco = mocap.bvh_to_coco17(bvh.names, pos, rot)
    for a, b in RIGID_H36M_BONES:
        length = np.linalg.norm(h36[:, a] - h36[:, b], axis=-1)
        assert length.std() < 0.01 * length.mean() + 1e-4
    assert 1.3 < np.median(h36[:, H36M17.index("head_top"), 1]) < 2.0  # metres, y up, a standing adult
    origin, up, left, forward = _body_frame(h36[0])
    assert (coco[0, COCO17.index("nose")] - origin) @ forward > 0.03
    for skel, pts in ((COCO17, coco[0]), (H36M17, h36[0])):
        for l_idx, r_idx in zip(skel.left, skel.right):
            assert (pts[l_idx] - origin) @ left > 0, skel.joints[l_idx]
            assert (pts[r_idx] - origin) @ left < 0, skel.joints[r_idx]
