"""User-facing exports: ``poses.json`` (schema ``poses_schema.json``), ``joints3d.csv``,
``joint_angles.csv`` and one ``person_<track>.bvh`` per lifted track.

:func:`poses_document` is the one producer of poses.json: the renderer stage and ``hpe3d lift`` both call
it. Schema version 2.0 (``poses_schema.json`` is its single description)::

    {"schema_version": "2.0",
     "video": {"width", "height", "fps", "frame_count", "duration_s", "rotation_deg", "still_image"},
     "units": {"keypoints_2d": "pixels", "keypoints_3d": "metres", "angles": "degrees", "time": "seconds"},
     "joints_2d": [17 COCO-17 names], "joints_3d": [17 Human3.6M-17 names], "model": str | null,
     "camera": {"focal_px", "focal_from_prior", "pitch_deg", "height_m"} | null,
     "angles": [{"name", "unit", "convention"}], "warnings": [str],
     "frames": [{"index", "timestamp_s",
                 "camera": {"rotation": [w, x, y, z], "focal_px", "quality"} | null,
                 "persons": [{"track_id", "keypoints_2d": [[x, y, score] * 17] | null,
                              "keypoints_3d_root_relative": [[x, y, z] * 17] | null,
                              "keypoints_3d_world": [[x, y, z] * 17] | null,
                              "foot_contacts": {"left": bool, "right": bool} | null,
                              "angles_deg": {name: number | null},
                              "angle_confidence": {name: 0..1},
                              "not_lifted": "too_brief" | "too_small" | null}]}]}
"""
from __future__ import annotations

import csv
import io
import json
import math

import numpy as np

from hpe3d.v1 import common_pb2
from services.common.joint_angles import ANGLE_NAMES, ANGLES, angle_confidence, joint_angles, joint_angles_batch
from services.common.rotating_camera import quaternion_from_rotation
from services.common.skeletons import COCO17, H36M17, coco17_to_h36m17

from .bvh import bvh_for_track
from .foot_points import FOOT_MIN_SCORE, feet_in_world, foot_length, rotation_from_tracks
from .pose_data import PersonPose, PoseTimeline

SCHEMA_VERSION = "2.0"
JOINTS3D_HEADER = ("frame", "timestamp_s", "track_id", "joint", "x_m", "y_m", "z_m")
ANGLES_HEADER = ("frame", "timestamp_s", "track_id",
                 *(column for n in ANGLE_NAMES for column in (f"{n}_deg", f"{n}_confidence")))
GROUNDED_FALLBACK_WARNING = (
    "3D positions: the lifter gave no shared world frame, so each person stands on the floor at their own "
    "pelvis-centred place; distances between persons and walking paths are not measured")


def _rows(array: np.ndarray | None, digits: int) -> list[list[float]] | None:
    """The array as nested lists rounded to ``digits``; None when absent or incomplete (NaN is not JSON)."""
    if array is None or not np.isfinite(array).all():
        return None
    return [[round(float(v), digits) for v in joint] for joint in array]


def frame_timestamps(info: common_pb2.VideoInfo) -> list[float]:
    """Time of every frame in seconds: the probed timestamps, else index / fps (a still image: 0)."""
    if len(info.timestamps_s) == info.frame_count:
        return list(info.timestamps_s)
    return [i / (info.fps or 30.0) for i in range(info.frame_count)]


def person_angles(person: PersonPose) -> tuple[dict[str, float], dict[str, float]]:
    """(angles in degrees, NaN = undefined; confidence 0..1) of one person from their world joints (no ankle
    angles: those need the video's camera, see :func:`persons_with_angles`)."""
    angles = joint_angles(person.world) if person.world is not None else {n: math.nan for n in ANGLE_NAMES}
    return angles, angle_confidence(angles, person.keypoints_2d)


#: poses.json's name of every CameraQuality
CAMERA_QUALITY = {common_pb2.CAMERA_STILL: "still", common_pb2.CAMERA_TRACKED: "tracked",
                  common_pb2.CAMERA_HELD: "held", common_pb2.CAMERA_TRANSLATED: "translated"}


def _frame_camera(timeline: PoseTimeline, index: int) -> dict | None:
    """poses.json's camera of one frame (the lifter's), None without one."""
    camera = timeline.camera_at(index)
    if camera is None:
        return None
    rotation, focal, quality = camera
    return {"rotation": [round(float(v), 6) + 0.0 for v in quaternion_from_rotation(rotation)],
            "focal_px": round(focal, 2), "quality": CAMERA_QUALITY.get(quality, "still")}


def _feet(info: common_pb2.VideoInfo, timeline: PoseTimeline, frames: list[list[PersonPose]],
           world: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Heel and toe [N, 2, 2, 3] in world metres and their scores [N, 2] of every person of ``frames``
    (flattened in order, ``world`` [N, 17, 3] their joints) from the matching BlazePose detection, seen by the
    lifter's camera of each frame (for a result without per-frame cameras, the rotation recovered from all
    lifted tracks, ``foot_points.rotation_from_tracks``); (None, None) without a camera estimate, a world
    frame or (without per-frame cameras) two lifted joints seen in 2D (``foot_points.feet_in_world``)."""
    camera = timeline.camera
    if camera is None or camera.focal_px <= 0 or timeline.world_source != "world" or not len(world):
        return None, None
    landmarks = np.full((len(world), 33, 3), np.nan)
    rotations, focals = np.zeros((len(world), 3, 3)), np.zeros(len(world))
    k = 0
    for index, persons in enumerate(frames):
        frame_camera = timeline.camera_at(index)
        for p in persons:
            found = timeline.blazepose_for(index, p.keypoints_2d) if p.world is not None else None
            if found is not None:
                landmarks[k] = found
            if frame_camera is not None:
                rotations[k], focals[k] = frame_camera[0], frame_camera[1]
            k += 1
    ankles = world[:, [H36M17.index("left_ankle"), H36M17.index("right_ankle")]]
    medio_lateral = world[:, H36M17.index("right_hip")] - world[:, H36M17.index("left_hip")]
    lengths = foot_length(world[:, [H36M17.index("left_knee"), H36M17.index("right_knee")]], ankles)
    if timeline.camera_frames is not None and (focals > 0).all():
        return feet_in_world(ankles, medio_lateral, lengths, landmarks, focals, rotations, camera.height_m,
                             info.width, info.height)
    seen = [(t.world, coco17_to_h36m17(t.keypoints_2d)) for t in timeline.tracks if t.keypoints_2d is not None]
    points = [(w[kp[..., 2] >= FOOT_MIN_SCORE], kp[kp[..., 2] >= FOOT_MIN_SCORE, :2]) for w, kp in seen]
    try:
        rotation = rotation_from_tracks(np.concatenate([w for w, _ in points]),
                                        np.concatenate([p for _, p in points]), camera.focal_px, camera.height_m,
                                        info.width, info.height)
    except ValueError:  # fewer than two lifted joints seen in 2D: no camera rotation, no feet
        return None, None
    return feet_in_world(ankles, medio_lateral, lengths, landmarks, camera.focal_px, rotation, camera.height_m,
                         info.width, info.height)


def persons_with_angles(info: common_pb2.VideoInfo, timeline: PoseTimeline
                        ) -> list[list[tuple[PersonPose, dict[str, float], dict[str, float]]]]:
    """Per frame, each person with (angles, confidence), computed for all persons of the video in one
    vectorised pass; the ankle angles use the heel and toe from the person's BlazePose landmarks
    (:func:`_feet`), as :func:`person_angles` cannot (it sees one person without the video)."""
    frames = [timeline.persons(i) for i in range(info.frame_count)]
    flat = [p for persons in frames for p in persons]
    world = np.array([p.world if p.world is not None else np.full((17, 3), np.nan) for p in flat]).reshape(-1, 17, 3)
    feet, foot_scores = _feet(info, timeline, frames, world)
    table = joint_angles_batch(world, feet)
    out, k = [], 0
    for persons in frames:
        row = []
        for p in persons:
            angles = {n: float(table[n][k]) for n in ANGLE_NAMES}
            scores = foot_scores[k] if foot_scores is not None else None
            row.append((p, angles, angle_confidence(angles, p.keypoints_2d, scores)))
            k += 1
        out.append(row)
    return out


def _person_entry(p: PersonPose, angles: dict[str, float], confidence: dict[str, float]) -> dict:
    contacts = None
    if p.foot_contacts is not None:
        contacts = {"left": bool(p.foot_contacts[0] >= 0.5), "right": bool(p.foot_contacts[1] >= 0.5)}
    return {"track_id": p.track_id,
            "keypoints_2d": _rows(p.keypoints_2d, 2),
            "keypoints_3d_root_relative": _rows(p.root_relative, 4),
            "keypoints_3d_world": _rows(p.world, 4),
            "foot_contacts": contacts,
            "angles_deg": {n: None if math.isnan(v) else round(v, 1) + 0.0 for n, v in angles.items()},
            "angle_confidence": {n: round(v, 3) for n, v in confidence.items()},
            "not_lifted": p.not_lifted or None}


def poses_document(info: common_pb2.VideoInfo, timeline: PoseTimeline, warnings: list[str] = ()) -> dict:
    """The poses.json document as plain Python data (see the module docstring). ``warnings`` are added
    after the video's own (``info.warnings``) and the renderer's (a fall-back from world to grounded)."""
    frames = [{"index": index, "timestamp_s": round(t, 6), "camera": _frame_camera(timeline, index),
               "persons": [_person_entry(*entry) for entry in persons]}
              for index, (t, persons) in enumerate(zip(frame_timestamps(info), persons_with_angles(info, timeline)))]
    camera = timeline.camera
    all_warnings = list(info.warnings)
    if timeline.world_source == "grounded":
        all_warnings.append(GROUNDED_FALLBACK_WARNING)
    all_warnings += [w for w in timeline.warnings if w not in all_warnings]
    all_warnings += list(warnings)
    return {
        "schema_version": SCHEMA_VERSION,
        "video": {"width": info.width, "height": info.height, "fps": info.fps,
                  "frame_count": info.frame_count, "duration_s": info.duration_s,
                  "rotation_deg": info.rotation_deg, "still_image": info.still_image},
        "units": {"keypoints_2d": "pixels", "keypoints_3d": "metres", "angles": "degrees", "time": "seconds"},
        "joints_2d": list(COCO17.joints),
        "joints_3d": list(H36M17.joints),
        "model": timeline.model,
        "camera": None if camera is None else {
            "focal_px": round(camera.focal_px, 2), "focal_from_prior": camera.focal_from_prior,
            "pitch_deg": round(camera.pitch_deg, 2), "height_m": round(camera.height_m, 3)},
        "angles": [{"name": a.name, "unit": a.unit, "convention": a.convention} for a in ANGLES],
        "warnings": all_warnings,
        "frames": frames,
    }


def poses_json(info: common_pb2.VideoInfo, timeline: PoseTimeline, warnings: list[str] = ()) -> bytes:
    return json.dumps(poses_document(info, timeline, warnings), separators=(",", ":")).encode()


def joints3d_csv(info: common_pb2.VideoInfo, timeline: PoseTimeline) -> bytes:
    """World 3D joints (metres, y up, floor y = 0, shared by all persons), one row per frame, track and joint."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(JOINTS3D_HEADER)
    for index, t in enumerate(frame_timestamps(info)):
        for p in timeline.persons(index):
            if p.world is None or not np.isfinite(p.world).all():
                continue
            for name, (x, y, z) in zip(H36M17.joints, p.world):
                writer.writerow((index, f"{t:.6f}", p.track_id, name, f"{x:.4f}", f"{y:.4f}", f"{z:.4f}"))
    return out.getvalue().encode()


def joint_angles_csv(info: common_pb2.VideoInfo, timeline: PoseTimeline) -> bytes:
    """Wide format: one row per frame and lifted person; per angle of ``angles.ANGLE_NAMES`` a
    ``<name>_deg`` column (degrees, empty = undefined) and a ``<name>_confidence`` column (0..1)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(ANGLES_HEADER)
    for index, (t, persons) in enumerate(zip(frame_timestamps(info), persons_with_angles(info, timeline))):
        for p, angles, confidence in persons:
            if p.world is None:
                continue
            cells = []
            for n in ANGLE_NAMES:
                cells += ["" if math.isnan(angles[n]) else f"{angles[n] + 0.0:.1f}", f"{confidence[n]:.3f}"]
            writer.writerow((index, f"{t:.6f}", p.track_id, *cells))
    return out.getvalue().encode()


def _complete_frames(world: np.ndarray) -> np.ndarray | None:
    """``world`` [F, 17, 3] with every frame that lacks a joint (NaN) replaced by the nearest complete frame;
    None when no frame is complete."""
    complete = np.flatnonzero(np.isfinite(world).all(axis=(1, 2)))
    if len(complete) == 0:
        return None
    if len(complete) == len(world):
        return world
    nearest = complete[np.abs(np.arange(len(world))[:, None] - complete[None, :]).argmin(axis=1)]
    return world[nearest]


def bvh_files(info: common_pb2.VideoInfo, timeline: PoseTimeline) -> list[tuple[str, bytes]]:
    """``(person_<track>.bvh, content)`` per lifted track: its world joints from its first frame on, frame
    time 1/fps of the video (a still image: one frame). See :mod:`services.renderer.bvh`. A frame missing a
    joint repeats the nearest complete frame; a track with no complete frame gets no file."""
    files = []
    for t in timeline.tracks:
        world = _complete_frames(t.world)
        if world is not None:
            files.append((f"person_{t.track_id}.bvh", bvh_for_track(world, info.fps)))
    return files
