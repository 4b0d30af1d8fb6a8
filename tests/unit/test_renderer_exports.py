"""Exports: poses.json 2.0 against poses_schema.json, the CSVs, the BVH list, and the angle maths."""
import csv
import io
import json
import math
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from hpe3d.v1 import common_pb2
from services.common.arrays import to_proto
from services.common.skeletons import COCO17
from services.common.joint_angles import ANGLE_NAMES, ANGLE_SOURCES, angle_confidence, joint_angles, joint_angles_batch
from services.renderer.exports import (GROUNDED_FALLBACK_WARNING, bvh_files, joint_angles_csv, joints3d_csv,
                                       poses_document, poses_json)
from services.renderer.pose_data import PoseTimeline

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "services/renderer/poses_schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def standing(x=0.0, z=-3.0):
    """Facing the camera (+z), left side at +x, metres, feet near y = 0."""
    return np.array([[0, .95, 0], [-.12, .95, 0], [-.12, .5, 0], [-.12, .05, 0], [.12, .95, 0], [.12, .5, 0],
                     [.12, .05, 0], [0, 1.2, 0], [0, 1.45, 0], [0, 1.55, .05], [0, 1.72, 0], [.12, 1.42, 0],
                     [.12, 1.12, 0], [.12, .85, 0], [-.12, 1.42, 0], [-.39, 1.42, 0], [-.39, 1.70, 0]],
                    np.float32) + np.array([x, 0, z], np.float32)


def make_inputs(frames=6, world=True, poses3d_hook=None):
    """A 6-frame job: raw 2D, one lifted track from frame 1; ``poses3d_hook(Poses3D)`` may add to the lift."""
    info = common_pb2.VideoInfo(width=640, height=360, fps=30, frame_count=frames, duration_s=frames / 30,
                                timestamps_s=[i / 30 for i in range(frames)], warnings=["a video warning"])
    raw = common_pb2.Poses2D(start_frame=0, frame_count=frames)
    for i in range(frames):
        f = raw.frames.add(frame_index=i, timestamp_s=i / 30)
        if i == 0:  # frame 0 is covered by no 3D track: raw 2D only
            f.persons.add(track_id=7, coco17=to_proto(np.full((17, 3), 0.5, np.float32)))
    n = frames - 2
    w = np.repeat(standing()[None], n, axis=0) + np.linspace([0, 0, 0], [0.3, 0, 0], n)[:, None].astype(np.float32)
    kp = np.ones((n, 17, 3), np.float32)
    kp[:, COCO17.index("left_wrist"), 2] = 0.4
    track = common_pb2.Track3D(track_id=1, first_frame=1, frame_count=n, grounded=to_proto(w - [0, 0, 0]),
                               root_relative=to_proto(w - w[:, :1]), keypoints2d=to_proto(kp))
    camera = None
    if world:
        track.world.CopyFrom(to_proto(w))
        contacts = np.zeros((n, 2), np.float32)
        contacts[:, 0] = 1
        track.foot_contacts.CopyFrom(to_proto(contacts))
        camera = common_pb2.CameraEstimate(focal_px=500.0, focal_from_prior=True, pitch_deg=8.0, height_m=1.5)
    p3 = common_pb2.Poses3D(tracks=[track], camera=camera)
    if poses3d_hook is not None:
        poses3d_hook(p3)
    return info, PoseTimeline([raw], p3)


def test_poses_json_2_follows_the_schema():
    info, timeline = make_inputs()
    doc = json.loads(poses_json(info, timeline, ["lifted by hand"]))
    VALIDATOR.validate(doc)
    assert doc["schema_version"] == "2.0" and len(doc["frames"]) == 6
    assert doc["joints_2d"][5] == "left_shoulder" and doc["joints_3d"][0] == "pelvis"
    assert doc["camera"] == {"focal_px": 500.0, "focal_from_prior": True, "pitch_deg": 8.0, "height_m": 1.5}
    assert doc["warnings"] == ["a video warning", "lifted by hand"]
    assert [a["name"] for a in doc["angles"]] == list(ANGLE_NAMES)
    raw = doc["frames"][0]["persons"][0]
    assert raw["track_id"] == 7 and raw["keypoints_3d_world"] is None and raw["foot_contacts"] is None
    assert all(v is None for v in raw["angles_deg"].values())
    p = doc["frames"][4]["persons"][0]
    assert p["track_id"] == 1 and p["keypoints_3d_world"][3] == pytest.approx([0.18, 0.05, -3.0], abs=1e-4)
    assert p["keypoints_3d_root_relative"][0] == [0, 0, 0]
    assert p["foot_contacts"] == {"left": True, "right": False}
    assert p["angles_deg"]["right_shoulder_abduction"] == pytest.approx(90.0)
    assert p["angles_deg"]["left_ankle_dorsiflexion"] is None and p["angle_confidence"]["left_ankle_dorsiflexion"] == 0
    assert p["angle_confidence"]["left_elbow_flexion"] == pytest.approx(0.4)  # the left wrist scored 0.4
    assert p["angle_confidence"]["right_elbow_flexion"] == pytest.approx(1.0)
    assert doc["frames"][5]["persons"] == []


def test_persons_the_lifter_gave_in_2d_only_are_exported_and_named():
    info, _ = make_inputs()
    kp = np.full((3, 17, 3), 0.8, np.float32)
    kp[1, :, 2] = 0                        # not detected on that frame
    brief = common_pb2.Track3D(track_id=4, first_frame=2, frame_count=3, keypoints2d=to_proto(kp), not_lifted="too_brief")
    small = common_pb2.Track3D(track_id=5, first_frame=0, frame_count=1, keypoints2d=to_proto(kp[:1]),
                               not_lifted="too_small")
    raw = common_pb2.Poses2D(start_frame=0, frame_count=6)
    for i in range(6):
        raw.frames.add(frame_index=i, timestamp_s=i / 30)
    p3 = common_pb2.Poses3D(tracks=[brief, small])
    p3.camera.CopyFrom(common_pb2.CameraEstimate(focal_px=500.0, pitch_deg=8.0, height_m=1.5))
    timeline = PoseTimeline([raw], p3)
    doc = json.loads(poses_json(info, timeline))
    VALIDATOR.validate(doc)
    persons = {f["index"]: [(p["track_id"], p["not_lifted"]) for p in f["persons"]] for f in doc["frames"]}
    assert persons == {0: [(5, "too_small")], 1: [], 2: [(4, "too_brief")], 3: [], 4: [(4, "too_brief")], 5: []}
    entry = doc["frames"][2]["persons"][0]
    assert entry["keypoints_2d"][0] == [0.8, 0.8, 0.8] and entry["keypoints_3d_world"] is None
    assert all(v is None for v in entry["angles_deg"].values())
    # beside a lifted person: both in the frame, the lifted one with no reason
    doc = json.loads(poses_json(info, PoseTimeline([raw], common_pb2.Poses3D(
        tracks=[*lifted_tracks(), brief], camera=p3.camera))))
    VALIDATOR.validate(doc)
    assert [(p["track_id"], p["not_lifted"]) for p in doc["frames"][2]["persons"]] == [(1, None), (4, "too_brief")]
    assert [name for name, _ in bvh_files(info, timeline)] == []


def lifted_tracks():
    n = 4
    w = np.repeat(standing()[None], n, axis=0)
    return [common_pb2.Track3D(track_id=1, first_frame=1, frame_count=n, world=to_proto(w),
                               root_relative=to_proto(w - w[:, :1]), keypoints2d=to_proto(np.ones((n, 17, 3), np.float32)))]


def test_schema_rejects_a_broken_document():
    info, timeline = make_inputs()
    doc = poses_document(info, timeline)
    doc["frames"][1]["persons"][0]["keypoints_2d"] = [[1, 2]] * 17
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(doc)
    doc = poses_document(info, timeline)
    doc["frames"][1]["persons"][0]["angle_confidence"]["trunk_flexion"] = 1.5
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(doc)


def test_without_world_the_grounded_joints_stand_in_and_a_warning_says_so():
    info, timeline = make_inputs(world=False)
    doc = poses_document(info, timeline)
    VALIDATOR.validate(doc)
    assert timeline.world_source == "grounded" and GROUNDED_FALLBACK_WARNING in doc["warnings"]
    assert doc["camera"] is None
    p = doc["frames"][1]["persons"][0]
    assert p["keypoints_3d_world"][3][1] == pytest.approx(0.05) and p["foot_contacts"] is None


def test_joints3d_csv_holds_world_joints():
    info, timeline = make_inputs()
    rows = list(csv.DictReader(io.StringIO(joints3d_csv(info, timeline).decode())))
    assert len(rows) == 4 * 17
    first = rows[0]
    assert (first["frame"], first["track_id"], first["joint"]) == ("1", "1", "pelvis")
    assert float(first["y_m"]) == pytest.approx(0.95) and float(first["z_m"]) == pytest.approx(-3.0)
    last = rows[-17]
    assert float(last["x_m"]) == pytest.approx(0.3, abs=1e-4)  # the walk along x is in the world joints


def test_joint_angles_csv_wide_with_confidence():
    info, timeline = make_inputs()
    rows = list(csv.DictReader(io.StringIO(joint_angles_csv(info, timeline).decode())))
    assert len(rows) == 4
    row = rows[0]
    assert list(row)[3:5] == [f"{ANGLE_NAMES[0]}_deg", f"{ANGLE_NAMES[0]}_confidence"]
    assert float(row["left_elbow_flexion_deg"]) == pytest.approx(0.0)    # left arm hangs straight
    assert float(row["left_elbow_flexion_confidence"]) == pytest.approx(0.4)
    assert float(row["right_shoulder_abduction_deg"]) == pytest.approx(90.0)  # right arm out sideways
    assert row["right_shoulder_flexion_deg"] == ""                         # undefined for an arm sideways
    assert float(row["right_elbow_flexion_deg"]) == pytest.approx(90.0)    # forearm straight up
    assert row["left_ankle_dorsiflexion_deg"] == "" and float(row["left_ankle_dorsiflexion_confidence"]) == 0


def test_bvh_file_per_track():
    info, timeline = make_inputs()
    files = bvh_files(info, timeline)
    assert [name for name, _ in files] == ["person_1.bvh"]
    text = files[0][1].decode()
    assert text.startswith("HIERARCHY\nROOT pelvis") and "Frames: 4\n" in text and "Frame Time: 0.03333333" in text


def test_bvh_of_a_track_with_missing_joints_repeats_the_nearest_complete_frame():
    info, _ = make_inputs()
    w = np.stack([standing(x=0.1 * i) for i in range(4)])
    w[1, 5] = np.nan
    timeline = PoseTimeline([], common_pb2.Poses3D(tracks=[
        common_pb2.Track3D(track_id=2, first_frame=0, frame_count=4, world=to_proto(w)),
        common_pb2.Track3D(track_id=3, first_frame=0, frame_count=1, world=to_proto(np.full((1, 17, 3), np.nan)))]))
    files = dict(bvh_files(info, timeline))
    assert list(files) == ["person_2.bvh"]
    rows = files["person_2.bvh"].decode().strip().splitlines()[-4:]
    assert rows[1].split()[:3] == rows[0].split()[:3] != rows[2].split()[:3]   # frame 1 = frame 0's root


def rotate(pose, axis, degrees, about):
    a = np.radians(degrees)
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    r = np.eye(3) + np.sin(a) * kx + (1 - np.cos(a)) * kx @ kx
    return (pose - about) @ r.T + about


def test_angles_neutral_zero_and_signed():
    pose = standing().astype(np.float64)
    pose[15], pose[16] = pose[14] + [0, -.3, 0], pose[14] + [0, -.57, 0]  # both arms hanging
    neutral = joint_angles(pose)
    for name, value in neutral.items():
        if name.endswith("ankle_dorsiflexion"):
            assert math.isnan(value)
        else:
            assert value == pytest.approx(0.0, abs=1e-6), name
    # left thigh forwards, shank hanging: hip flexion 90, knee flexion 90
    sitting = pose.copy()
    sitting[5] = sitting[4] + [0, 0, .45]
    sitting[6] = sitting[5] + [0, -.45, 0]
    a = joint_angles(sitting)
    assert a["left_hip_flexion"] == pytest.approx(90) and a["left_knee_flexion"] == pytest.approx(90)
    assert a["left_hip_abduction"] == pytest.approx(0, abs=1e-6)
    # knee bent forwards (hyperextension) is negative
    hyper = pose.copy()
    hyper[6] = hyper[5] + [0, -.45 * np.cos(.2), .45 * np.sin(.2)]
    assert joint_angles(hyper)["left_knee_flexion"] == pytest.approx(-np.degrees(.2))
    # right leg out to the side: abduction positive; across the midline: negative
    out = pose.copy()
    out[2:4] = rotate(out[2:4], [0, 0, 1], -20, out[1])  # about z: the right (-x) leg swings outwards
    assert joint_angles(out)["right_hip_abduction"] == pytest.approx(20)
    across = pose.copy()
    across[2:4] = rotate(across[2:4], [0, 0, 1], 10, across[1])
    assert joint_angles(across)["right_hip_abduction"] == pytest.approx(-10)
    # arm forwards 90 deg: flexion 90, abduction undefined; arm overhead sideways: abduction 180
    forwards = pose.copy()
    forwards[12], forwards[13] = forwards[11] + [0, 0, .3], forwards[11] + [0, 0, .57]
    a = joint_angles(forwards)
    assert a["left_shoulder_flexion"] == pytest.approx(90) and math.isnan(a["left_shoulder_abduction"])
    overhead = pose.copy()
    overhead[12], overhead[13] = overhead[11] + [.01, .3, 0], overhead[11] + [.02, .57, 0]
    assert joint_angles(overhead)["left_shoulder_abduction"] == pytest.approx(180, abs=3)
    # trunk leaning forwards 30 deg and to the person's right 10 deg, against the world vertical
    lean = rotate(pose, [1, 0, 0], 30, pose[0])   # about +x: the upper body tips towards +z (forwards)
    a = joint_angles(lean)
    assert a["trunk_flexion"] == pytest.approx(30, abs=0.1) and a["trunk_lateral_lean"] == pytest.approx(0, abs=0.1)
    side = rotate(pose, [0, 0, 1], 10, pose[0])   # about +z: the upper body tips towards -x (the right)
    assert joint_angles(side)["trunk_lateral_lean"] == pytest.approx(10, abs=0.1)
    # head nodding forwards relative to the thorax
    nod = pose.copy()
    nod[9:11] = rotate(nod[9:11], [1, 0, 0], 25, nod[8])
    assert joint_angles(nod)["neck_flexion"] == pytest.approx(25, abs=0.1)


def test_batch_angles_match_single_poses_and_a_missing_joint_spoils_only_its_angles():
    rng = np.random.default_rng(1)
    poses = standing()[None] + rng.normal(0, 0.05, (30, 17, 3))
    poses[3, 13] = np.nan   # Human3.6M left_wrist missing in pose 3
    batch = joint_angles_batch(poses)
    for i in (0, 3, 29):
        single = joint_angles(poses[i])
        for name in ANGLE_NAMES:
            assert (math.isnan(single[name]) and math.isnan(batch[name][i])) or single[name] == batch[name][i]
    assert math.isnan(batch["left_elbow_flexion"][3]) and not math.isnan(batch["right_elbow_flexion"][3])
    assert not math.isnan(batch["left_knee_flexion"][3])


def test_angles_of_a_person_turned_away_are_the_same():
    pose = standing().astype(np.float64)
    turned = rotate(pose, [0, 1, 0], 140, pose[0]) + [1, 0, 2]
    a, b = joint_angles(pose), joint_angles(turned)
    for name in ANGLE_NAMES:
        assert (math.isnan(a[name]) and math.isnan(b[name])) or a[name] == pytest.approx(b[name], abs=1e-6), name


def test_angle_confidence_is_the_lowest_score_of_its_joints():
    angles = joint_angles(standing())
    kp = np.ones((17, 3))
    kp[COCO17.index("right_knee"), 2] = 0.2
    conf = angle_confidence(angles, kp)
    for name in ANGLE_NAMES:
        if math.isnan(angles[name]):
            assert conf[name] == 0
        elif "right_knee" in ANGLE_SOURCES[name]:
            assert conf[name] == pytest.approx(0.2)
        else:
            assert conf[name] == pytest.approx(1.0)
    assert all(v == 0 for v in angle_confidence(angles, None).values())


def blazepose_job(frames=4, with_landmarks=True, dorsiflexion=15.0, pan_deg_per_frame=0.0, per_frame_camera=False):
    """A person walking across the view (facing +x) seen by make_inputs's camera; the 2D stage gave
    BlazePose's 33 landmarks (heel and toe included) unless ``with_landmarks`` is off (a COCO-17-only model).
    Both feet are tipped up by ``dorsiflexion`` degrees against the vertical shank. The camera turns about the
    vertical by ``pan_deg_per_frame`` every frame and zooms out 3 % per frame when that is not 0; with
    ``per_frame_camera`` the lifter's result carries every frame's rotation and focal length."""
    from services.common.rotating_camera import quaternion_from_rotation, rotation_from_vector
    from services.common.skeletons import BLAZEPOSE33, BLAZEPOSE33_TO_COCO17, H36M17
    from services.renderer.foot_points import camera_rotation
    focal, pitch, height_m = 500.0, 8.0, 1.5
    info, _ = make_inputs(frames)
    turns = [rotation_from_vector([0, np.radians(pan_deg_per_frame * i), 0]) @ camera_rotation(pitch)
             for i in range(frames)]
    focals = [focal * (0.97 ** i if pan_deg_per_frame else 1.0) for i in range(frames)]

    def project(points, i=0):
        cam = (np.asarray(points, float) - [0, height_m, 0]) @ turns[i]
        return np.stack([focals[i] * cam[..., 0] / cam[..., 2] + info.width / 2,
                         focals[i] * cam[..., 1] / cam[..., 2] + info.height / 2], axis=-1)

    base = rotate(standing(z=0).astype(np.float64), [0, 1, 0], 90, [0, 0, 0]) + [0, 0, -3]
    world = np.stack([base + [0.05 * i, 0, 0] for i in range(frames)])
    h36m_of_coco = [H36M17.index(n) if n in H36M17.joints else H36M17.index("head_top") for n in COCO17.joints]
    h36m_of_coco[0] = H36M17.index("neck_nose")
    a = np.radians(dorsiflexion)
    raw = common_pb2.Poses2D(start_frame=0, frame_count=frames)
    keypoints = []
    for i in range(frames):
        kp = np.ones((17, 3))
        kp[:, :2] = project(world[i, h36m_of_coco], i)
        keypoints.append(kp)
        person = raw.frames.add(frame_index=i).persons.add(track_id=3, coco17=to_proto(kp.astype(np.float32)))
        if with_landmarks:
            lm = np.ones((33, 3))
            lm[BLAZEPOSE33_TO_COCO17] = kp
            for side in ("left", "right"):
                ankle = world[i, H36M17.index(f"{side}_ankle")]
                heel = ankle + [-0.05, -0.05, 0]
                lm[BLAZEPOSE33.index(f"{side}_heel"), :2] = project(heel, i)
                toe = heel + 0.22 * np.array([np.cos(a), np.sin(a), 0])
                lm[BLAZEPOSE33.index(f"{side}_foot_index"), :2] = project(toe, i)
                lm[BLAZEPOSE33.index(f"{side}_foot_index"), 2] = 0.8
            person.blazepose33.CopyFrom(to_proto(lm.astype(np.float32)))
    track = common_pb2.Track3D(track_id=1, first_frame=0, frame_count=frames, world=to_proto(world.astype(np.float32)),
                               root_relative=to_proto((world - world[:, :1]).astype(np.float32)),
                               keypoints2d=to_proto(np.array(keypoints, np.float32)))
    camera = common_pb2.CameraEstimate(focal_px=focal, focal_from_prior=True, pitch_deg=pitch, height_m=height_m)
    if per_frame_camera:
        camera.rotations.CopyFrom(to_proto(quaternion_from_rotation(np.array(turns)).astype(np.float32)))
        camera.focal_per_frame.CopyFrom(to_proto(np.array(focals, np.float32)))
        camera.quality.extend([common_pb2.CAMERA_TRACKED] * frames)
    return info, PoseTimeline([raw], common_pb2.Poses3D(tracks=[track], camera=camera))


def test_a_blazepose_job_exports_ankle_angles():
    info, timeline = blazepose_job()
    doc = json.loads(poses_json(info, timeline))
    VALIDATOR.validate(doc)
    for frame in doc["frames"]:
        p = frame["persons"][0]
        for side in ("left", "right"):
            assert p["angles_deg"][f"{side}_ankle_dorsiflexion"] == pytest.approx(15.0, abs=0.2)
            assert p["angle_confidence"][f"{side}_ankle_dorsiflexion"] == pytest.approx(0.8)  # the toe's score
        assert p["angles_deg"]["left_knee_flexion"] == pytest.approx(0.0, abs=1e-3)
    rows = list(csv.DictReader(io.StringIO(joint_angles_csv(info, timeline).decode())))
    assert len(rows) == 4
    assert all(float(r["right_ankle_dorsiflexion_deg"]) == pytest.approx(15.0, abs=0.2) for r in rows)
    assert all(float(r["right_ankle_dorsiflexion_confidence"]) == pytest.approx(0.8) for r in rows)


def test_a_coco17_only_job_leaves_the_ankle_angles_null_and_says_why():
    info, timeline = blazepose_job(with_landmarks=False)
    doc = poses_document(info, timeline)
    p = doc["frames"][0]["persons"][0]
    assert p["angles_deg"]["left_ankle_dorsiflexion"] is None and p["angle_confidence"]["left_ankle_dorsiflexion"] == 0
    assert p["angles_deg"]["left_knee_flexion"] is not None
    convention = {a["name"]: a["convention"] for a in doc["angles"]}["left_ankle_dorsiflexion"]
    assert "BlazePose" in convention and "null for COCO-17-only" in convention
    row = next(csv.DictReader(io.StringIO(joint_angles_csv(info, timeline).decode())))
    assert row["left_ankle_dorsiflexion_deg"] == ""


def test_a_job_whose_2d_scores_are_all_low_gets_no_ankle_angle_and_no_error():
    info, timeline = blazepose_job()
    for t in timeline.tracks:
        t.keypoints_2d[..., 2] = 0.1    # no lifted joint seen well enough to recover the camera's rotation
    p = poses_document(info, timeline)["frames"][0]["persons"][0]
    assert p["angles_deg"]["left_ankle_dorsiflexion"] is None and p["angles_deg"]["left_knee_flexion"] is not None


def test_a_turning_zooming_camera_uses_the_lifters_camera_of_every_frame():
    info, timeline = blazepose_job(frames=4, pan_deg_per_frame=3.0, per_frame_camera=True)
    doc = json.loads(poses_json(info, timeline))
    VALIDATOR.validate(doc)
    for i, frame in enumerate(doc["frames"]):
        assert frame["camera"]["quality"] == "tracked"
        assert frame["camera"]["focal_px"] == pytest.approx(500.0 * 0.97 ** i, abs=0.01)
        p = frame["persons"][0]
        for side in ("left", "right"):
            assert p["angles_deg"][f"{side}_ankle_dorsiflexion"] == pytest.approx(15.0, abs=0.2)
    # without the per-frame camera one rotation is recovered for all frames, and the turned, zoomed frames'
    # feet come out wrong
    info, timeline = blazepose_job(frames=4, pan_deg_per_frame=3.0, per_frame_camera=False)
    doc = json.loads(poses_json(info, timeline))
    assert all(f["camera"] is None for f in doc["frames"])
    last = doc["frames"][-1]["persons"][0]["angles_deg"]["left_ankle_dorsiflexion"]
    assert last is None or abs(last - 15.0) > 1.0


def test_a_still_camera_marks_every_frame_still():
    from services.common.rotating_camera import quaternion_from_rotation
    from services.renderer.foot_points import camera_rotation

    def still_camera(p3):
        p3.camera.rotations.CopyFrom(to_proto(np.tile(quaternion_from_rotation(camera_rotation(8.0)), (6, 1))))
        p3.camera.focal_per_frame.CopyFrom(to_proto(np.full(6, 500.0, np.float32)))
        p3.camera.quality.extend([common_pb2.CAMERA_STILL] * 6)
        p3.warnings.append("camera: a fact the lifter found")

    info, timeline = make_inputs(poses3d_hook=still_camera)
    doc = json.loads(poses_json(info, timeline))
    VALIDATOR.validate(doc)
    assert [f["camera"]["quality"] for f in doc["frames"]] == ["still"] * 6
    assert doc["frames"][0]["camera"]["rotation"] == pytest.approx(quaternion_from_rotation(camera_rotation(8.0)),
                                                                   abs=1e-6)
    assert "camera: a fact the lifter found" in doc["warnings"]
