"""Exports: poses.json against poses_schema.json, the CSVs, and the angle maths."""
import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from hpe3d.v1 import common_pb2
from services.common.arrays import to_proto
from services.renderer.angles import ANGLE_NAMES, angle_at, joint_angles
from services.renderer.exports import joint_angles_csv, joints3d_csv, poses_document, poses_json
from services.renderer.pose_data import PoseTimeline

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "services/renderer/poses_schema.json").read_text())


def validate(value, schema, root=SCHEMA, path="$"):
    """The subset of JSON Schema that poses_schema.json uses; raises AssertionError with a path."""
    if "$ref" in schema:
        node = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        return validate(value, node, root, path)
    if "const" in schema:
        assert value == schema["const"], f"{path}: {value!r} != {schema['const']!r}"
    if "enum" in schema:
        assert value in schema["enum"], f"{path}: {value!r} not in {schema['enum']}"
    types = schema.get("type")
    if types:
        types = [types] if isinstance(types, str) else types
        kinds = {"object": dict, "array": list, "string": str, "null": type(None),
                 "integer": int, "number": (int, float)}
        assert any(isinstance(value, kinds[t]) and not (t in ("integer", "number") and isinstance(value, bool))
                   for t in types), f"{path}: {type(value).__name__} is not {types}"
    if isinstance(value, dict):
        for key in schema.get("required", []):
            assert key in value, f"{path}: missing {key}"
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            assert not set(value) - set(props), f"{path}: unexpected {set(value) - set(props)}"
        for key, sub in props.items():
            if key in value:
                validate(value[key], sub, root, f"{path}.{key}")
    if isinstance(value, list):
        assert len(value) >= schema.get("minItems", 0), f"{path}: too few items"
        assert len(value) <= schema.get("maxItems", math.inf), f"{path}: too many items"
        for i, item in enumerate(value):
            if "items" in schema:
                validate(item, schema["items"], root, f"{path}[{i}]")


def standing(x=0.0, z=3.0):
    return np.array([[0, .95, 0], [-.12, .95, 0], [-.12, .5, 0], [-.12, .05, 0], [.12, .95, 0], [.12, .5, 0],
                     [.12, .05, 0], [0, 1.2, 0], [0, 1.45, 0], [0, 1.55, .05], [0, 1.72, 0], [.12, 1.42, 0],
                     [.12, 1.12, 0], [.12, .85, 0], [-.12, 1.42, 0], [-.39, 1.42, 0], [-.39, 1.70, 0]],
                    np.float32) + np.array([x, 0, z], np.float32)


def make_inputs(frames=6):
    info = common_pb2.VideoInfo(width=640, height=360, fps=30, frame_count=frames, duration_s=frames / 30,
                                timestamps_s=[i / 30 for i in range(frames)])
    raw = common_pb2.Poses2D(start_frame=0, frame_count=frames)
    for i in range(frames):
        f = raw.frames.add(frame_index=i, timestamp_s=i / 30)
        if i == 0:  # frame 0 is covered by no 3D track: raw 2D only
            f.persons.add(track_id=7, coco17=to_proto(np.full((17, 3), 0.5, np.float32)))
    g = np.repeat(standing()[None], frames - 2, axis=0)
    p3 = common_pb2.Poses3D(tracks=[common_pb2.Track3D(
        track_id=1, first_frame=1, frame_count=frames - 2, grounded=to_proto(g),
        root_relative=to_proto(g - g[:, :1]), keypoints2d=to_proto(np.ones((frames - 2, 17, 3), np.float32)))])
    return info, PoseTimeline([raw], p3)


def test_poses_json_follows_the_schema():
    info, timeline = make_inputs()
    doc = json.loads(poses_json(info, timeline))
    validate(doc, SCHEMA)
    assert doc["schema_version"] == "1.0" and len(doc["frames"]) == 6
    assert doc["joints_2d"][5] == "left_shoulder" and doc["joints_3d"][0] == "pelvis"
    assert doc["frames"][0]["persons"][0]["track_id"] == 7
    assert doc["frames"][0]["persons"][0]["keypoints_3d_grounded"] is None
    p = doc["frames"][1]["persons"][0]
    assert p["track_id"] == 1 and p["keypoints_3d_grounded"][3][1] == pytest.approx(0.05)
    assert p["keypoints_3d_root_relative"][0] == [0, 0, 0]
    assert doc["frames"][5]["persons"] == []


def test_validator_rejects_a_broken_document():
    info, timeline = make_inputs()
    doc = poses_document(info, timeline)
    doc["frames"][1]["persons"][0]["keypoints_2d"] = [[1, 2]] * 17
    with pytest.raises(AssertionError, match="too few"):
        validate(doc, SCHEMA)


def test_joints3d_csv_long_format():
    info, timeline = make_inputs()
    rows = list(csv.DictReader(io.StringIO(joints3d_csv(info, timeline).decode())))
    assert len(rows) == 4 * 17
    first = rows[0]
    assert (first["frame"], first["track_id"], first["joint"]) == ("1", "1", "pelvis")
    assert float(first["y_m"]) == pytest.approx(0.95) and float(first["z_m"]) == pytest.approx(3.0)


def test_joint_angles_csv_and_known_geometry():
    info, timeline = make_inputs()
    rows = list(csv.DictReader(io.StringIO(joint_angles_csv(info, timeline).decode())))
    assert len(rows) == 4
    row = rows[0]
    assert float(row["left_elbow_deg"]) == pytest.approx(180.0)   # left arm hangs straight
    assert float(row["left_shoulder_deg"]) == pytest.approx(0.0, abs=1e-3)
    assert float(row["right_shoulder_deg"]) == pytest.approx(90.0)  # right arm level
    assert float(row["right_elbow_deg"]) == pytest.approx(90.0)     # forearm straight up
    assert float(row["left_knee_deg"]) == pytest.approx(180.0)
    assert float(row["left_hip_deg"]) == pytest.approx(180.0)


def test_angle_at_right_angle_and_degenerate():
    assert angle_at(np.zeros(3), np.array([1, 0, 0]), np.array([0, 0, 2])) == pytest.approx(90.0)
    assert angle_at(np.zeros(3), np.array([1, 0, 0]), np.array([-1, 1, 0])) == pytest.approx(135.0)
    assert math.isnan(angle_at(np.zeros(3), np.zeros(3), np.array([1, 0, 0])))
    sitting = standing()
    sitting[5] = sitting[4] + [0, 0, -0.45]  # left thigh forward: knee in front of the hip
    sitting[6] = sitting[5] + [0, -0.45, 0]
    angles = joint_angles(sitting)
    assert angles["left_hip"] == pytest.approx(90.0) and angles["left_knee"] == pytest.approx(90.0)
    assert set(angles) == set(ANGLE_NAMES)
