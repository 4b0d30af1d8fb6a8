"""The CMU character-rig BVH mapped to COCO-17 / Human3.6M-17, on a 9-frame fixture of take 007_03 (its first
frame is the rig's rest pose), and the fixed adaptation / held-out split."""
from pathlib import Path

import numpy as np

from services.common.skeletons import COCO17, H36M17
from training.cmu import (FACE_FROM_EYES, cmu_joints, is_held_out, leading_rest_frames, root_rest_offset_m,
                          take_joints_30fps)
from training.mocap import HEAD_POINTS, forward_kinematics, load_bvh, parse_bvh

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "cmu_007_03_9f.bvh"


def test_the_rest_frame_is_dropped_and_the_take_is_resampled_to_30_fps():
    bvh = load_bvh(FIXTURE)
    assert bvh.num_frames == 9 and abs(bvh.frame_time - 1 / 60) < 1e-5
    pos, _ = forward_kinematics(bvh)
    assert leading_rest_frames(pos) == 1
    assert len(cmu_joints(bvh)["h36m17"]) == 8
    joints = take_joints_30fps(FIXTURE)
    assert joints["coco17"].shape == (4, 17, 3) and joints["h36m17"].shape == (4, 17, 3)
    assert np.allclose(joints["h36m17"], cmu_joints(bvh)["h36m17"][::2])


def test_mapping_puts_every_joint_where_it_belongs():
    j = take_joints_30fps(FIXTURE)
    coco, h36 = j["coco17"].astype(np.float64), j["h36m17"].astype(np.float64)
    c, h = COCO17.index, H36M17.index
    # +Y up: head over thorax over pelvis over knees over ankles
    for upper, lower in (("head_top", "thorax"), ("thorax", "spine"), ("spine", "pelvis"),
                         ("pelvis", "left_knee"), ("left_knee", "left_ankle"), ("right_knee", "right_ankle")):
        assert (h36[:, h(upper), 1] > h36[:, h(lower), 1] + 0.1).all(), (upper, lower)
    # left is on the actor's left (right-handed axes: up x forward points to the actor's left); the face
    # points (from the head's axes) and the rig's named left/right joints agree
    up = h36[:, h("head_top")] - h36[:, h("pelvis")]
    forward = coco[:, c("nose")] - (coco[:, c("left_ear")] + coco[:, c("right_ear")]) / 2
    left = np.cross(up, forward)
    for name in ("hip", "shoulder", "knee", "eye", "ear"):
        d = coco[:, c(f"left_{name}")] - coco[:, c(f"right_{name}")]
        assert ((d * left).sum(-1) > 0).all(), name
    # pelvis is the midpoint of the hips (the same rule as the Bandai mapping and the 2D side)
    assert np.allclose(h36[:, h("pelvis")], (coco[:, c("left_hip")] + coco[:, c("right_hip")]) / 2, atol=1e-6)
    for shared in ("left_knee", "right_wrist", "left_shoulder"):
        assert np.allclose(h36[:, h(shared)], coco[:, c(shared)])
    assert np.allclose(h36[:, h("neck_nose")], coco[:, c("nose")])
    # adult proportions in metres
    thigh = np.linalg.norm(h36[:, h("left_knee")] - h36[:, h("left_hip")], axis=-1)
    eyes = np.linalg.norm(coco[:, c("left_eye")] - coco[:, c("right_eye")], axis=-1)
    assert (0.35 < thigh).all() and (thigh < 0.6).all() and (0.05 < eyes).all() and (eyes < 0.08).all()
    # the face points keep the Bandai mapping's geometry around the eyes
    assert np.allclose(FACE_FROM_EYES["nose"], np.subtract(HEAD_POINTS["nose"], HEAD_POINTS["left_eye"])
                       + np.subtract(HEAD_POINTS["left_eye"], np.mean([HEAD_POINTS["left_eye"],
                                                                        HEAD_POINTS["right_eye"]], axis=0)))


def test_split_holds_out_every_fourth_take_of_each_subject_from_the_second():
    names = [f"005_{i:02d}" for i in range(1, 21)] + ["003_01", "003_02"]
    by_subject = {s: sorted(n for n in names if n.startswith(s)) for s in ("005", "003")}
    held = [n for n in names if is_held_out(n, by_subject[n[:3]])]
    assert held == ["005_02", "005_06", "005_10", "005_14", "005_18", "003_02"]


def test_the_take_stands_on_a_floor_at_zero_like_the_bandai_takes():
    # the root's position channels are displacements from its rest OFFSET (hips 105 cm up): read alone they put
    # the feet a metre below the floor, and the virtual cameras (heights above y = 0) look down on the person
    bvh = load_bvh(FIXTURE)
    assert np.allclose(root_rest_offset_m(bvh), [0.0, 1.05214226, 0.0], atol=1e-6)
    h36 = take_joints_30fps(FIXTURE)["h36m17"]
    h = H36M17.index
    lowest_ankle = h36[:, [h("left_ankle"), h("right_ankle")], 1].min()
    assert 0.03 < lowest_ankle < 0.2  # the ankle joint a few centimetres above the sole, as in the Bandai takes
    assert 0.85 < h36[:, h("pelvis"), 1].mean() < 1.2


def test_a_root_without_a_rest_offset_is_not_moved():
    text = """HIERARCHY
ROOT RL_BoneRoot
{
    OFFSET 0 0 0
    CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation
    End Site
    {
        OFFSET 0 10 0
    }
}
MOTION
Frames: 1
Frame Time: 0.0166667
1 2 3 0 0 0
"""
    assert np.allclose(root_rest_offset_m(parse_bvh(text)), 0.0)
