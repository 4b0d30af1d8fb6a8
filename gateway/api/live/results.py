"""The JSON the page gets for each live frame: per person the 2D keypoints, the 3D pose, its joint
angles (``services.common.joint_angles``, as the exports compute them) and the server's timings."""
from __future__ import annotations

import math

import numpy as np

from hpe3d.v1 import lifter3d_pb2, pose2d_pb2
from services.common.arrays import from_proto
from services.common.joint_angles import ANGLES, angle_confidence, joint_angles_batch


def _rounded(values: np.ndarray, digits: int) -> list:
    return np.round(values.astype(np.float64), digits).tolist()


def _finite_or_none(value: float, digits: int) -> float | None:
    return round(float(value), digits) if math.isfinite(value) else None


def angle_descriptions() -> list[dict[str, str]]:
    """Every angle's name, unit and sign convention (poses.json's ``angles``), for the ``ready`` message."""
    return [{"name": a.name, "unit": a.unit, "convention": a.convention} for a in ANGLES]


def persons_message(pose2d: pose2d_pb2.Pose2DStreamReply, lift: lifter3d_pb2.LiftStreamReply) -> list[dict]:
    """Per person of the frame: ``track_id``, ``keypoints_2d`` (COCO-17 [x, y, score] in pixels of the
    JPEG sent), ``keypoints_3d`` (Human3.6M-17 [x, y, z] metres: ``LivePerson3D.world``),
    ``keypoints_3d_root_relative``, ``angles_deg`` and ``angle_confidence`` (null = undefined; the ankle
    angles are always null live: no foot points), ``window_frames``."""
    if not lift.persons:
        return []
    world = np.stack([from_proto(p.world) for p in lift.persons])
    angles = joint_angles_batch(world)
    out = []
    for i, person in enumerate(lift.persons):
        keypoints = from_proto(person.keypoints2d)
        these = {name: float(values[i]) for name, values in angles.items()}
        confidence = angle_confidence(these, keypoints)
        out.append({
            "track_id": person.track_id,
            "keypoints_2d": _rounded(keypoints, 2),
            "keypoints_3d": _rounded(world[i], 4),
            "keypoints_3d_root_relative": _rounded(from_proto(person.root_relative), 4),
            "angles_deg": {name: _finite_or_none(v, 2) for name, v in these.items()},
            "angle_confidence": {name: round(c, 3) for name, c in confidence.items()},
            "window_frames": person.window_frames,
        })
    return out
