"""User-facing exports: ``poses.json`` (schema ``poses_schema.json``), ``joints3d.csv`` and
``joint_angles.csv``.

JSON, schema_version 1.0 (see ``poses_schema.json`` and the README)::

    {"schema_version": "1.0",
     "video": {"width", "height", "fps", "frame_count", "duration_s", "rotation_deg"},
     "units": {"keypoints_2d": "pixels", "keypoints_3d": "metres", "angles": "degrees"},
     "joints_2d": [17 COCO-17 names], "joints_3d": [17 Human3.6M-17 names],
     "frames": [{"index", "timestamp_s",
                 "persons": [{"track_id", "keypoints_2d": [[x, y, score] * 17] | null,
                              "keypoints_3d_root_relative": [[x, y, z] * 17] | null,
                              "keypoints_3d_grounded": [[x, y, z] * 17] | null}]}]}

CSV files are long format, one row per (frame, track, joint) or (frame, track, angle).
"""
from __future__ import annotations

import csv
import io
import json
import math

import numpy as np

from hpe3d.v1 import common_pb2
from services.common.skeletons import COCO17, H36M17

from .angles import ANGLE_NAMES, joint_angles
from .pose_data import PoseTimeline

SCHEMA_VERSION = "1.0"
JOINTS3D_HEADER = ("frame", "timestamp_s", "track_id", "joint", "x_m", "y_m", "z_m")
ANGLES_HEADER = ("frame", "timestamp_s", "track_id", *(f"{n}_deg" for n in ANGLE_NAMES))


def _rows(array: np.ndarray | None, digits: int) -> list[list[float]] | None:
    if array is None:
        return None
    return [[round(float(v), digits) for v in joint] for joint in array]


def frame_timestamps(info: common_pb2.VideoInfo) -> list[float]:
    """Time of every frame in seconds: the probed timestamps, else index / fps."""
    if len(info.timestamps_s) == info.frame_count:
        return list(info.timestamps_s)
    return [i / (info.fps or 30.0) for i in range(info.frame_count)]


def poses_document(info: common_pb2.VideoInfo, timeline: PoseTimeline) -> dict:
    """The poses.json document as plain Python data."""
    frames = []
    for index, t in enumerate(frame_timestamps(info)):
        frames.append({"index": index, "timestamp_s": round(t, 6), "persons": [
            {"track_id": p.track_id,
             "keypoints_2d": _rows(p.keypoints_2d, 2),
             "keypoints_3d_root_relative": _rows(p.root_relative, 4),
             "keypoints_3d_grounded": _rows(p.grounded, 4)}
            for p in timeline.persons(index)]})
    return {
        "schema_version": SCHEMA_VERSION,
        "video": {"width": info.width, "height": info.height, "fps": info.fps,
                  "frame_count": info.frame_count, "duration_s": info.duration_s,
                  "rotation_deg": info.rotation_deg},
        "units": {"keypoints_2d": "pixels", "keypoints_3d": "metres", "angles": "degrees"},
        "joints_2d": list(COCO17.joints),
        "joints_3d": list(H36M17.joints),
        "frames": frames,
    }


def poses_json(info: common_pb2.VideoInfo, timeline: PoseTimeline) -> bytes:
    return json.dumps(poses_document(info, timeline), separators=(",", ":")).encode()


def joints3d_csv(info: common_pb2.VideoInfo, timeline: PoseTimeline) -> bytes:
    """Grounded 3D joints (metres, y up, feet on y = 0), one row per frame, track and joint."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(JOINTS3D_HEADER)
    for index, t in enumerate(frame_timestamps(info)):
        for p in timeline.persons(index):
            if p.grounded is None:
                continue
            for name, (x, y, z) in zip(H36M17.joints, p.grounded):
                writer.writerow((index, f"{t:.6f}", p.track_id, name, f"{x:.4f}", f"{y:.4f}", f"{z:.4f}"))
    return out.getvalue().encode()


def joint_angles_csv(info: common_pb2.VideoInfo, timeline: PoseTimeline) -> bytes:
    """Angles of ``angles.ANGLE_NAMES`` in degrees, one row per frame and track; empty cell = NaN."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(ANGLES_HEADER)
    for index, t in enumerate(frame_timestamps(info)):
        for p in timeline.persons(index):
            if p.root_relative is None:
                continue
            angles = joint_angles(p.root_relative)
            writer.writerow((index, f"{t:.6f}", p.track_id,
                             *("" if math.isnan(angles[n]) else f"{angles[n]:.1f}" for n in ANGLE_NAMES)))
    return out.getvalue().encode()
