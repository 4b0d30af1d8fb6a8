"""Joint angles in degrees from one Human3.6M-17 3D pose.

Each angle is the angle at a joint between two segments, 0..180 degrees:

* ``elbow``    elbow->shoulder vs elbow->wrist   (arm straight = 180)
* ``knee``     knee->hip vs knee->ankle          (leg straight = 180)
* ``hip``      hip->shoulder (trunk side) vs hip->knee   (standing = ~180, sitting = ~90)
* ``shoulder`` shoulder->hip (trunk side) vs shoulder->elbow   (arm down = ~0, arm level = 90)

for the left and the right side. An angle is NaN when a segment has zero length.
"""
from __future__ import annotations

import numpy as np

from services.common.skeletons import H36M17

_J = H36M17.index

# name -> (vertex joint, first end, second end), H36M-17 joint names
ANGLE_DEFINITIONS: dict[str, tuple[str, str, str]] = {}
for _side in ("left", "right"):
    ANGLE_DEFINITIONS[f"{_side}_elbow"] = (f"{_side}_elbow", f"{_side}_shoulder", f"{_side}_wrist")
    ANGLE_DEFINITIONS[f"{_side}_knee"] = (f"{_side}_knee", f"{_side}_hip", f"{_side}_ankle")
    ANGLE_DEFINITIONS[f"{_side}_hip"] = (f"{_side}_hip", f"{_side}_shoulder", f"{_side}_knee")
    ANGLE_DEFINITIONS[f"{_side}_shoulder"] = (f"{_side}_shoulder", f"{_side}_hip", f"{_side}_elbow")
ANGLE_NAMES = tuple(ANGLE_DEFINITIONS)


def angle_at(vertex: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Angle in degrees at ``vertex`` between the segments to ``a`` and to ``b`` (3-vectors)."""
    u, v = np.asarray(a, np.float64) - vertex, np.asarray(b, np.float64) - vertex
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu == 0 or nv == 0:
        return float("nan")
    return float(np.degrees(np.arccos(np.clip(np.dot(u, v) / (nu * nv), -1.0, 1.0))))


def joint_angles(pose: np.ndarray) -> dict[str, float]:
    """All angles of ``ANGLE_NAMES`` for one pose ``[17, 3]`` (metres, any frame of reference)."""
    p = np.asarray(pose, np.float64)
    return {name: angle_at(p[_J(v)], p[_J(a)], p[_J(b)]) for name, (v, a, b) in ANGLE_DEFINITIONS.items()}
