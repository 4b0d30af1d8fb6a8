"""Joint angles people use, in degrees, from one Human3.6M-17 pose in a y-up frame, with a confidence each.

Body frames (ISB-style axes: X anterior, Y superior, Z to the person's right; right-handed):

* pelvis: Z from the left hip to the right hip, Y along pelvis -> spine made perpendicular to Z, X = Y x Z;
* thorax: Z from the left shoulder to the right shoulder, Y along spine -> thorax made perpendicular to Z,
  X = Y x Z.

Angles (signed; 0 in the neutral standing pose: upright, arms hanging, legs straight, looking ahead):

* ``<side>_hip_flexion`` / ``<side>_hip_abduction``: thigh (hip -> knee) in the pelvis frame, ISB joint
  coordinate system order: flexion about the pelvis's medio-lateral axis (positive thigh forwards, negative
  extension), then abduction about the floating axis (positive thigh away from the midline, negative
  adduction). No hip rotation: the skeleton has no foot to measure it.
* ``<side>_knee_flexion``: angle between thigh and shank (hip -> knee, knee -> ankle); positive when the
  shank turns backwards about the pelvis's medio-lateral axis (flexion), negative for hyperextension.
* ``<side>_ankle_dorsiflexion``: foot (heel -> toe) against the shank (ankle -> knee) in the sagittal plane
  (perpendicular to the pelvis's medio-lateral axis Z): 0 with the foot perpendicular to the shank, positive
  toes towards the shin (dorsiflexion, ISB's ankle flexion), negative pointing the toes (plantarflexion).
  The 17-joint skeleton has no heel or toe: they come from the 2D model's foot landmarks placed in 3D next
  to the lifted ankle (``services/renderer/foot_points.py``; BlazePose only). Undefined (null) without
  them (top-down COCO-17 models, the live view), where the foot was not seen (a landmark under the visibility threshold or outside the frame), or
  where the foot or shank lies within 20 degrees of the medio-lateral axis.
* ``<side>_shoulder_flexion`` / ``<side>_shoulder_abduction``: upper arm (shoulder -> elbow) in the thorax
  frame, measured as a goniometer does, in the thorax's sagittal plane (flexion positive forwards, negative
  extension; overhead = 180) and frontal plane (abduction positive away from the midline; overhead = 180).
  Undefined when the upper arm is within 20 degrees of the plane's normal (e.g. abduction of an arm held
  straight forwards).
* ``<side>_elbow_flexion``: angle between upper arm and forearm (0 = straight, 0..180); the sign of
  hyperextension is not measurable without the hand's orientation.
* ``trunk_flexion`` / ``trunk_lateral_lean``: trunk (pelvis -> thorax) relative to the world vertical (y up),
  in the person's sagittal plane (positive leaning forwards) and frontal plane (positive leaning to the
  person's right); the person's forwards and right are the pelvis frame's X and Z made horizontal.
* ``neck_flexion`` / ``neck_lateral_flexion``: head (thorax -> head top) relative to the thorax's Y axis, in
  the thorax's sagittal plane (positive chin towards chest) and frontal plane (positive head tilted to the
  person's right).

An angle is NaN when it is undefined (a segment of zero length, the cases above). Its confidence
(0..1) is the lowest 2D detector score among the COCO-17 joints the angle's segments and frames are built
from (:data:`ANGLE_SOURCES`), for the ankle also its BlazePose ankle, heel and toe visibilities; 0 when the
angle is undefined or no 2D scores are known.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.common.skeletons import COCO17, H36M17

_J = H36M17.index
PLANE_MIN_PROJECTION = np.sin(np.radians(20.0))  #: planar angles need the segment this far out of the normal


@dataclass(frozen=True)
class AngleInfo:
    """What one angle means: its name, unit and sign convention (exported in poses.json's ``angles``)."""

    name: str
    unit: str
    convention: str


def _side_angles(side: str) -> list[AngleInfo]:
    other = "right" if side == "left" else "left"
    return [
        AngleInfo(f"{side}_hip_flexion", "deg", f"{side} thigh in the pelvis frame (ISB order), about the "
                  "medio-lateral axis: + forwards (flexion), - backwards (extension); 0 standing"),
        AngleInfo(f"{side}_hip_abduction", "deg", f"{side} thigh in the pelvis frame, about the floating axis: "
                  f"+ away from the midline (abduction), - towards the {other} leg (adduction); 0 standing"),
        AngleInfo(f"{side}_knee_flexion", "deg", "angle between thigh and shank: + flexion (shank turned "
                  "backwards), - hyperextension; 0 straight"),
        AngleInfo(f"{side}_ankle_dorsiflexion", "deg", "foot (heel->toe) against the shank (ankle->knee) in "
                  "the sagittal plane: + toes towards the shin (dorsiflexion), - toes pointed (plantarflexion); 0 "
                  "foot perpendicular to the shank. Heel and toe from BlazePose's 2D foot landmarks placed "
                  "beside the lifted ankle: null for COCO-17-only 2D models (no foot points), an unseen foot "
                  "(or one outside the frame), or a foot pointing within 20 deg of sideways"),
        AngleInfo(f"{side}_shoulder_flexion", "deg", f"{side} upper arm in the thorax's sagittal plane: "
                  "+ forwards (flexion, 180 overhead), - backwards (extension); 0 hanging; null when the arm "
                  "points within 20 deg of sideways"),
        AngleInfo(f"{side}_shoulder_abduction", "deg", f"{side} upper arm in the thorax's frontal plane: "
                  "+ away from the midline (abduction, 180 overhead), - across the body; 0 hanging; null when "
                  "the arm points within 20 deg of straight forwards or backwards"),
        AngleInfo(f"{side}_elbow_flexion", "deg", "angle between upper arm and forearm: 0 straight, "
                  "180 fully folded (unsigned)"),
    ]


ANGLES: tuple[AngleInfo, ...] = tuple(
    _side_angles("left") + _side_angles("right") + [
        AngleInfo("trunk_flexion", "deg", "pelvis->thorax against the world vertical in the person's sagittal "
                  "plane: + leaning forwards, - backwards; 0 upright"),
        AngleInfo("trunk_lateral_lean", "deg", "pelvis->thorax against the world vertical in the person's "
                  "frontal plane: + leaning to the person's right, - to the left; 0 upright"),
        AngleInfo("neck_flexion", "deg", "thorax->head top against the thorax's long axis in its sagittal "
                  "plane: + chin towards the chest, - head back; 0 in line with the trunk"),
        AngleInfo("neck_lateral_flexion", "deg", "thorax->head top against the thorax's long axis in its frontal "
                  "plane: + head tilted to the person's right, - to the left; 0 in line with the trunk"),
    ])
ANGLE_NAMES: tuple[str, ...] = tuple(a.name for a in ANGLES)

_TORSO = ("left_hip", "right_hip", "left_shoulder", "right_shoulder")
_HEAD = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")


def _sources() -> dict[str, tuple[str, ...]]:
    out = {}
    for side in ("left", "right"):
        leg = (f"{side}_hip", f"{side}_knee")
        out[f"{side}_hip_flexion"] = out[f"{side}_hip_abduction"] = _TORSO + leg
        out[f"{side}_knee_flexion"] = _TORSO + leg + (f"{side}_ankle",)
        out[f"{side}_ankle_dorsiflexion"] = _TORSO + leg + (f"{side}_ankle",)  # and the foot's, see below
        out[f"{side}_shoulder_flexion"] = out[f"{side}_shoulder_abduction"] = _TORSO + (f"{side}_elbow",)
        out[f"{side}_elbow_flexion"] = (f"{side}_shoulder", f"{side}_elbow", f"{side}_wrist")
    out["trunk_flexion"] = out["trunk_lateral_lean"] = _TORSO
    out["neck_flexion"] = out["neck_lateral_flexion"] = _TORSO + _HEAD
    return out


#: COCO-17 joints whose 2D scores bound each angle's confidence (the H36M joints an angle uses are built
#: from these: pelvis and spine from hips and shoulders, thorax from shoulders, head top from eyes and ears);
#: an ankle angle is also bounded by its foot's landmark score (``angle_confidence``'s ``foot_scores``)
ANGLE_SOURCES: dict[str, tuple[str, ...]] = _sources()
_SOURCE_INDEX = {name: [COCO17.index(j) for j in joints] for name, joints in ANGLE_SOURCES.items()}


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=-1)


def _unit(v: np.ndarray) -> np.ndarray:
    """Unit vectors [N, 3]; NaN where ``v`` has (almost) no length."""
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.where(n > 1e-9, v / np.where(n > 1e-9, n, 1.0), np.nan)


def _frame(right: np.ndarray, up: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ISB axes (X anterior, Y superior, Z right) [N, 3] each from rightwards and upwards vectors [N, 3]
    (NaN where degenerate)."""
    z = _unit(right)
    y = _unit(up - _dot(up, z)[:, None] * z)
    return np.cross(y, z), y, z


def _planar(v: np.ndarray, down: np.ndarray, towards: np.ndarray) -> np.ndarray:
    """Angle in degrees of ``v`` [N, 3] in the plane spanned by ``down`` (0) and ``towards`` (+90), in
    (-90, 270] so that an arm overhead does not jump between +180 and -180; NaN when ``v`` lies within
    20 degrees of the plane's normal."""
    a, b = _dot(v, down), _dot(v, towards)
    with np.errstate(invalid="ignore"):
        ok = np.hypot(a, b) >= PLANE_MIN_PROJECTION * np.linalg.norm(v, axis=-1)
        angle = np.degrees(np.arctan2(b, a))
        angle = np.where(angle <= -90.0, angle + 360.0, angle)
    return np.where(ok, angle, np.nan)


def _between(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Angle in degrees between [N, 3] vectors; NaN where one has no length."""
    return np.degrees(np.arccos(np.clip(_dot(_unit(u), _unit(v)), -1.0, 1.0)))


def ankle_dorsiflexion(knee: np.ndarray, ankle: np.ndarray, heel: np.ndarray, toe: np.ndarray,
                       medio_lateral: np.ndarray) -> np.ndarray:
    """Dorsiflexion in degrees ([N]) from points [N, 3] and the pelvis's unit medio-lateral axis Z [N, 3]
    (to the person's right): the angle of the foot (heel -> toe) against the perpendicular of the shank
    (ankle -> knee) in the plane normal to Z; + toes towards the shin. NaN where a point is missing or the
    foot or shank lies within 20 degrees of Z."""
    def sagittal(v: np.ndarray) -> np.ndarray:
        flat = v - _dot(v, medio_lateral)[:, None] * medio_lateral
        ok = np.linalg.norm(flat, axis=-1) >= PLANE_MIN_PROJECTION * np.linalg.norm(v, axis=-1)
        return np.where(ok[:, None], flat, np.nan)

    foot, shank_up = sagittal(toe - heel), sagittal(knee - ankle)
    # with X anterior, Y superior and Z right (X x Y = Z), a neutral foot (X) is +90 deg from the shank (Y)
    between = np.degrees(np.arctan2(_dot(np.cross(foot, shank_up), medio_lateral), _dot(foot, shank_up)))
    return (90.0 - between + 180.0) % 360.0 - 180.0


def joint_angles_batch(poses: np.ndarray, feet: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every angle of :data:`ANGLE_NAMES` (degrees, NaN = undefined) for poses [N, 17, 3] in metres,
    Human3.6M-17 order, in a frame whose y axis points up (world or root-relative y-up): name -> [N].
    ``feet`` [N, 2, 2, 3]: per side (left, right) the heel and the toe in the same frame (NaN where
    unknown; ``services.renderer.foot_points.feet_in_world``); without it the ankle angles are NaN."""
    p = np.asarray(poses, np.float64).reshape(-1, 17, 3)
    f = np.full((len(p), 2, 2, 3), np.nan) if feet is None else np.asarray(feet, np.float64).reshape(-1, 2, 2, 3)
    out = {name: np.full(len(p), np.nan) for name in ANGLE_NAMES}

    def j(name: str) -> np.ndarray:
        return p[:, _J(name)]

    with np.errstate(invalid="ignore"):
        px, py, pz = _frame(j("right_hip") - j("left_hip"), j("spine") - j("pelvis"))
        tx, ty, tz = _frame(j("right_shoulder") - j("left_shoulder"), j("thorax") - j("spine"))
        for side in ("left", "right"):
            lateral = 1.0 if side == "right" else -1.0  # +Z points right: away from the midline on the right
            thigh = j(f"{side}_knee") - j(f"{side}_hip")
            shank = j(f"{side}_ankle") - j(f"{side}_knee")
            arm = j(f"{side}_elbow") - j(f"{side}_shoulder")
            out[f"{side}_elbow_flexion"] = _between(arm, j(f"{side}_wrist") - j(f"{side}_elbow"))
            t = _unit(thigh)
            out[f"{side}_hip_abduction"] = np.degrees(np.arcsin(np.clip(lateral * _dot(t, pz), -1, 1)))
            flexion = np.degrees(np.arctan2(_dot(t, px), -_dot(t, py)))
            out[f"{side}_hip_flexion"] = np.where(np.hypot(_dot(t, px), _dot(t, py)) >= PLANE_MIN_PROJECTION,
                                                  flexion, np.nan)
            # flexion turns the shank backwards: thigh x shank points along -Z (to the person's left)
            bend = _between(thigh, shank)
            sign = np.where(_dot(np.cross(thigh, shank), pz) <= 0, 1.0, -1.0)
            out[f"{side}_knee_flexion"] = np.where(np.isfinite(pz).all(axis=-1), bend * sign, np.nan)
            k = 0 if side == "left" else 1
            out[f"{side}_ankle_dorsiflexion"] = ankle_dorsiflexion(j(f"{side}_knee"), j(f"{side}_ankle"),
                                                                   f[:, k, 0], f[:, k, 1], pz)
            out[f"{side}_shoulder_flexion"] = _planar(arm, -ty, tx)
            out[f"{side}_shoulder_abduction"] = _planar(arm, -ty, lateral * tz)
        vertical = np.array([0.0, 1.0, 0.0])
        forwards = _unit(px * [1.0, 0.0, 1.0])
        right = _unit(pz * [1.0, 0.0, 1.0])
        trunk = j("thorax") - j("pelvis")
        has_trunk = np.linalg.norm(trunk, axis=-1) > 1e-9
        out["trunk_flexion"] = np.where(has_trunk, np.degrees(np.arctan2(_dot(trunk, forwards), trunk @ vertical)),
                                        np.nan)
        out["trunk_lateral_lean"] = np.where(has_trunk, np.degrees(np.arctan2(_dot(trunk, right), trunk @ vertical)),
                                             np.nan)
        head = j("head_top") - j("thorax")
        has_head = np.linalg.norm(head, axis=-1) > 1e-9
        out["neck_flexion"] = np.where(has_head, np.degrees(np.arctan2(_dot(head, tx), _dot(head, ty))), np.nan)
        out["neck_lateral_flexion"] = np.where(has_head, np.degrees(np.arctan2(_dot(head, tz), _dot(head, ty))),
                                               np.nan)
    return out


def joint_angles(pose: np.ndarray) -> dict[str, float]:
    """:func:`joint_angles_batch` of one pose [17, 3]: name -> degrees (NaN = undefined)."""
    p = np.asarray(pose, np.float64)
    if p.shape != (17, 3):
        return {name: float("nan") for name in ANGLE_NAMES}
    return {name: float(v[0]) for name, v in joint_angles_batch(p[None]).items()}


def angle_confidence(angles: dict[str, float], keypoints_2d: np.ndarray | None,
                     foot_scores: np.ndarray | None = None) -> dict[str, float]:
    """Confidence 0..1 of each angle: the lowest 2D score (COCO-17 ``keypoints_2d`` [17, 3]) among
    :data:`ANGLE_SOURCES`, for an ankle angle also its foot's landmark score (``foot_scores`` [2]: left,
    right, e.g. ``services.renderer.foot_points.feet_in_world``'s); 0 for an undefined angle or when no 2D is known."""
    out = {}
    for name in ANGLE_NAMES:
        sources = _SOURCE_INDEX[name]
        if keypoints_2d is None or not sources or np.isnan(angles.get(name, float("nan"))):
            out[name] = 0.0
            continue
        score = float(np.min(np.asarray(keypoints_2d)[sources, 2]))
        if name.endswith("_ankle_dorsiflexion"):
            score = min(score, float(foot_scores[0 if name.startswith("left") else 1])
                        if foot_scores is not None else 0.0)
        out[name] = float(np.clip(score, 0.0, 1.0))
    return out
