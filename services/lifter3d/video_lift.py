"""Lifting a whole video's 2D detections: link tracks, lift each track with the temporal model, then place
every track in the video's shared world frame (:mod:`services.lifter3d.world`)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hpe3d.v1 import common_pb2
from services.common.arrays import to_proto
from services.common.errors import InvalidInput, WeightsMissing, no_person_found
from services.common.rotating_camera import quaternion_from_rotation
from services.common.skeletons import coco17_to_h36m17

import numpy as np
import torch

from .lift import DEFAULT_WEIGHTS, LiftResult, lift_sequence, load_lifter
from .tracking import detections_from_frames, link_tracks
from .camera_path import STILL, CameraPath, video_camera
from .world import CameraPose, PlacedTrack, TrackInput, place_in_world

DEFAULT_MIN_TRACK_FRAMES = 5
#: A person whose median 2D height (their confident joints' extent) is below this fraction of the frame
#: height is given in 2D only: at a few dozen pixels the joints are too uncertain for the lifter.
MIN_LIFT_HEIGHT = 1 / 20
TOO_BRIEF, TOO_SMALL = "too_brief", "too_small"
#: A person unseen for up to this long (hidden, or missed by the 2D stage) stays one track, as in the 2D stage.
MAX_HIDDEN_S = 2.0


def pixel_height(keypoints: np.ndarray, min_score: float = 0.3) -> float:
    """Median over a track's detected frames of the vertical extent of the confident joints (pixels)."""
    heights = []
    for kp in keypoints:
        seen = kp[kp[:, 2] >= min_score, 1]
        if len(seen) >= 3:
            heights.append(float(seen.max() - seen.min()))
    return float(np.median(heights)) if heights else 0.0


def why_not_lifted(track, min_frames: int, height: float) -> str:
    """"" when the track is lifted; else ``TOO_BRIEF`` or ``TOO_SMALL``."""
    if track.detected_frames < min_frames:
        return TOO_BRIEF
    if pixel_height(track.as_array()) < MIN_LIFT_HEIGHT * height:
        return TOO_SMALL
    return ""


@dataclass
class Lifter:
    """A loaded temporal lifter and the name of its weights file."""

    model: torch.nn.Module
    name: str


def load_service_lifter(weights_path: str | Path | None = None) -> Lifter:
    """Load the lifter a service runs: ``weights_path`` or the shipped weights.

    Raises:
        WeightsMissing: the file is absent; the message says which file to supply and where.
    """
    path = Path(weights_path) if weights_path else DEFAULT_WEIGHTS
    try:
        model = load_lifter(path)
    except FileNotFoundError as exc:
        raise WeightsMissing(str(exc)) from exc
    return Lifter(model, path.name)


def lift_tracks(tracks: list[np.ndarray], width: float, height: float, model: torch.nn.Module,
                focal_px: float = 0.0, fps: float = 0.0,
                progress: Callable[[int, int, str], None] | None = None,
                first_frames: list[int] | None = None, camera_path: CameraPath | None = None,
                ) -> tuple[CameraPose, list[tuple[LiftResult, PlacedTrack]]]:
    """Lift the tracks of one video (each ``[F, 17, 3]`` COCO-17 pixels + score, F >= 1, from video frame
    ``first_frames[i]``, 0 when None) and place them in the video's shared world frame; returns the camera
    estimate and, per track, its lift and placement. ``focal_px`` 0 = the prior, ``fps`` 0 = 30,
    ``camera_path`` None = a still camera (see :func:`services.lifter3d.world.place_in_world`)."""
    lifted = []
    for done, keypoints in enumerate(tracks):
        if progress:
            progress(done, len(tracks), f"lifting track {done + 1} of {len(tracks)} ({len(keypoints)} frames)")
        lifted.append(lift_sequence(keypoints, width, height, model))
    starts = first_frames or [0] * len(lifted)
    camera, placed = place_in_world(
        [TrackInput(r.camera, coco17_to_h36m17(r.keypoints_2d), start) for r, start in zip(lifted, starts)],
        width, height, focal_px, fps, camera_path=camera_path)
    return camera, list(zip(lifted, placed))


def camera_estimate(camera: CameraPose, frame_count: int) -> common_pb2.CameraEstimate:
    """The stored form of the camera, with its rotation, focal length and quality in every frame."""
    quality = camera.path.quality[:frame_count] if camera.path is not None else np.full(frame_count, STILL)
    return common_pb2.CameraEstimate(
        focal_px=camera.focal_px, focal_from_prior=camera.focal_from_prior, pitch_deg=camera.pitch_deg,
        height_m=camera.height_m, rotations=to_proto(quaternion_from_rotation(camera.frame_rotations(frame_count))),
        focal_per_frame=to_proto(camera.frame_focals(frame_count)), quality=[int(q) for q in quality])


def lift_frames(frames: list[common_pb2.FramePoses2D], width: int, height: int, lifter: Lifter,
                min_track_frames: int = 0,
                progress: Callable[[int, int, str], None] | None = None, focal_px: float = 0.0,
                fps: float = 0.0, segment_starts: list[int] | None = None,
                camera_motions: list[common_pb2.CameraMotion] | None = None) -> common_pb2.Poses3D:
    """Lift every person track of a video to 3D and place all of them in one world frame.

    Args:
        frames: 2D detections per frame (any order; frame indices may have holes).
        width, height: size of the frames the 2D coordinates refer to, in pixels.
        lifter: from ``load_service_lifter``.
        min_track_frames: tracks with fewer detected frames are not lifted (0 = default of 5); they, and
            tracks of persons less than ``MIN_LIFT_HEIGHT`` of the frame tall, come back as ``Track3D`` with
            their 2D only and ``not_lifted`` saying why.
        progress: called with (tracks done, tracks total, message).
        focal_px: the camera's focal length in pixels of ``width`` x ``height``; 0 = the prior
            (:data:`services.lifter3d.camera.PRIOR_FOV_DEG`).
        fps: frame rate of the input (trajectory smoothing, contact speeds); 0 = 30.
        segment_starts: first frame of every 2D segment (the 2D stage's track ids restart in each);
            None: the frames form one segment.
        camera_motions: the decoder's camera motion of the video's segments; None or empty: a still camera.
            With them and no ``focal_px`` the focal length is estimated from them when the camera turned
            enough (:func:`services.lifter3d.camera_path.video_camera`).

    Raises:
        InvalidInput: frame size missing or coordinates malformed.
        NoPersonFound: no track to lift (none long or tall enough).
    """
    if width <= 0 or height <= 0:
        raise InvalidInput(f"frame size must be positive, got {width}x{height}")
    min_frames = min_track_frames or DEFAULT_MIN_TRACK_FRAMES
    try:
        detections = detections_from_frames(frames, segment_starts)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    frame_count = max((f.frame_index for f in frames), default=-1) + 1
    linked = link_tracks(detections, frame_count, max_gap=round(MAX_HIDDEN_S * (fps or 30.0)))
    reasons = {t.track_id: why_not_lifted(t, min_frames, height) for t in linked}
    tracks = [t for t in linked if not reasons[t.track_id]]
    if not tracks:
        raise no_person_found(frame_count, len(detections), min_track_frames=min_frames,
                              longest_track=max((t.detected_frames for t in linked), default=0))
    try:
        path, focal_px, warnings = video_camera(camera_motions or [], focal_px, width, height, frame_count)
    except ValueError as exc:
        raise InvalidInput(f"camera motion: {exc}") from exc
    camera, lifted = lift_tracks([t.as_array() for t in tracks], width, height, lifter.model, focal_px, fps,
                                 progress, [t.first_frame for t in tracks], path)
    result = common_pb2.Poses3D(model=lifter.name, camera=camera_estimate(camera, len(path) if path else frame_count),
                                warnings=warnings)
    for track, (r, p) in zip(tracks, lifted):
        result.tracks.append(common_pb2.Track3D(
            track_id=track.track_id, first_frame=track.first_frame, frame_count=track.frame_count,
            root_relative=to_proto(r.world), grounded=to_proto(r.grounded),
            keypoints2d=to_proto(r.keypoints_2d), world=to_proto(p.world),
            foot_contacts=to_proto(p.contacts.astype("float32"))))
    for track in linked:      # the persons given in 2D only, and why
        if reasons[track.track_id]:
            result.tracks.append(common_pb2.Track3D(
                track_id=track.track_id, first_frame=track.first_frame, frame_count=track.frame_count,
                keypoints2d=to_proto(track.as_array()), not_lifted=reasons[track.track_id]))
    if progress:
        progress(len(tracks), len(tracks), "lifted")
    return result
