"""The camera's turn and zoom in every frame, relative to the first, from the decoder's camera motion.

The decoder stores, per frame, a homography from a keyframe to the frame (``CameraMotion``, see
:mod:`services.decoder.camera_motion`). :func:`chain_camera_motion` solves each for the rotation and zoom of
a camera that turns and zooms about a fixed centre (:func:`services.common.rotating_camera.
rotation_zoom_from_homography`, with the focal length the world placement uses) and chains keyframes to the
first frame: a frame's orientation is its step times its keyframe's. A step the turn-and-zoom model explains
worse than :data:`TRANSLATION_PX` is kept but flagged ``CAMERA_TRANSLATED`` (the camera itself probably
moved; :func:`translation_warning`). Frames without a usable step (too little background) are flagged
``CAMERA_HELD`` and filled in: between two frames of one chain, turned and zoomed evenly from one to the
other; across a gap after which the decoder had to start a new chain (its orientation relative to the first
frame unknown), turned on at the camera's turning speed and zoom rate, measured over :data:`SPEED_FRAMES`
frames at each end of the gap and going linearly from one to the other (a camera, hand-held or on a head,
keeps turning as it turned; holding it still across the gap would leave the rest of the video off by all
the turn it missed); after the last usable frame, the last orientation is held.

:func:`estimate_focal` finds the focal length from the same homographies when the camera turned enough to
show it: the one under which the turn-and-zoom model explains them best (perspective terms of a turn grow
with the angle over the focal length); a still camera keeps the prior.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpe3d.v1 import common_pb2
from services.common.arrays import from_proto
from services.common.rotating_camera import (TurnAndZoom, rotation_angle_deg, rotation_from_vector,
                                             rotation_zoom_from_homography, vector_from_rotation)
from services.lifter3d.camera import focal_prior

STILL, TRACKED, HELD, TRANSLATED = (common_pb2.CAMERA_STILL, common_pb2.CAMERA_TRACKED, common_pb2.CAMERA_HELD,
                                    common_pb2.CAMERA_TRANSLATED)
#: RMS distance, pixels of a 640 px working frame, by which a fitted homography may differ from the best
#: turn-and-zoom model before the frame is flagged as a camera that moved (parallax).
TRANSLATION_PX = 1.5
#: Frames over which the camera's turning speed is measured at each end of a gap in the background.
SPEED_FRAMES = 3
#: Share of frames flagged ``CAMERA_TRANSLATED`` from which the job is warned.
TRANSLATION_WARN_SHARE = 0.1
#: The focal length is estimated only when the steps turn the camera at least this far (degrees) ...
FOCAL_MIN_TURN_DEG = 3.0
#: ... and the estimate explains the steps this much better than the prior (median residual, pixels).
FOCAL_MIN_GAIN_PX = 0.2
#: Focal lengths tried, as factors of the prior (log-spaced), then refined around the best.
FOCAL_SEARCH = np.exp(np.linspace(np.log(0.4), np.log(4.0), 25))
#: Steps used for the focal length: the ones that turn the camera most, at most this many.
FOCAL_STEPS = 40


@dataclass
class CameraPath:
    """Per frame of the video: ``to_first [F, 3, 3]`` maps camera-frame vectors of the frame to those of the
    first frame; ``zoom [F]`` its focal length over the first frame's; ``quality [F]`` a ``CameraQuality``
    value; ``residual_px [F]`` how far the turn-and-zoom model stayed from the measured homography."""

    to_first: np.ndarray
    zoom: np.ndarray
    quality: np.ndarray
    residual_px: np.ndarray

    @classmethod
    def still(cls, frame_count: int) -> "CameraPath":
        """A camera that does not move (every frame as the first)."""
        return cls(np.tile(np.eye(3), (frame_count, 1, 1)), np.ones(frame_count),
                   np.full(frame_count, STILL, np.int32), np.zeros(frame_count))

    @property
    def moving(self) -> bool:
        """Whether any frame was tracked (not a still camera)."""
        return bool(np.any(self.quality != STILL))

    def __len__(self) -> int:
        return len(self.zoom)


def _steps_by_frame(motions: list[common_pb2.CameraMotion]) -> tuple[dict[int, common_pb2.CameraStep], float]:
    """Every step by frame index, and the working width their pixels refer to."""
    steps = {}
    width = 0.0
    for motion in motions:
        width = width or float(motion.width)
        if motion.width and abs(motion.width - width) > 1:
            raise ValueError(f"camera motions of different frame sizes ({motion.width} and {width:.0f} px wide)")
        for step in motion.steps:
            steps[step.frame_index] = step
    return steps, width


def _region(step: common_pb2.CameraStep) -> tuple[float, float, float, float] | None:
    box = step.support
    return (box.x_min, box.y_min, box.x_max, box.y_max) if box.x_max > box.x_min and box.y_max > box.y_min else None


class _Chainer:
    """Builds a :class:`CameraPath` frame by frame (see :func:`chain_camera_motion`)."""

    def __init__(self, steps: dict[int, common_pb2.CameraStep], focal: float, width: float, height: float,
                 frame_count: int):
        self.steps, self.focal, self.width, self.height = steps, focal, width, height
        self.path = CameraPath.still(frame_count)
        self.known = np.zeros(frame_count, bool)   # orientation measured, relative to the first frame

    def usable(self, t: int) -> common_pb2.CameraStep | None:
        step = self.steps.get(t)
        return step if step is not None and step.reliable and 0 <= step.reference_frame <= t else None

    def turn(self, step: common_pb2.CameraStep, reference_zoom: float) -> TurnAndZoom:
        return rotation_zoom_from_homography(from_proto(step.homography).reshape(3, 3), self.focal * reference_zoom,
                                             self.width, self.height, _region(step))

    def speed(self, last: int) -> tuple[np.ndarray, float, float]:
        """Camera-frame turn (rotation vector) and log zoom per frame over the known frames up to ``last``, and
        the time (frame) they refer to."""
        path, turns, zooms, times = self.path, [], [], []
        for t in range(last, max(0, last - SPEED_FRAMES), -1):
            if not (self.known[t] and self.known[t - 1]):
                break
            turns.append(vector_from_rotation(path.to_first[t - 1].T @ path.to_first[t]))
            zooms.append(np.log(path.zoom[t] / path.zoom[t - 1]))
            times.append(t - 0.5)
        if not turns:
            return np.zeros(3), 0.0, last - 0.5
        return np.mean(turns, axis=0), float(np.mean(zooms)), float(np.mean(times))

    def speed_after(self, root: int, zoom: float) -> tuple[np.ndarray, float, float] | None:
        """The same over the first frames of the chain that starts at ``root`` (solved with ``zoom`` for the
        root), or None when it has no following steps."""
        rotation, zooms, turns, logs, times = {root: np.eye(3)}, {root: zoom}, [], [], []
        for t in range(root + 1, min(len(self.path), root + 3 * SPEED_FRAMES + 1)):
            step = self.usable(t)
            if len(turns) == SPEED_FRAMES:
                break
            if step is None or step.reference_frame not in rotation:
                continue
            turn = self.turn(step, zooms[step.reference_frame])
            rotation[t] = rotation[step.reference_frame] @ turn.rotation.T
            zooms[t] = zooms[step.reference_frame] * turn.zoom
            if t - 1 in rotation:
                turns.append(vector_from_rotation(rotation[t - 1].T @ rotation[t]))
                logs.append(np.log(zooms[t] / zooms[t - 1]))
                times.append(t - 0.5)
        return (np.mean(turns, axis=0), float(np.mean(logs)), float(np.mean(times))) if turns else None

    def carry(self, last: int, root: int, after: tuple[np.ndarray, float, float]) -> None:
        """Frames ``last + 1 .. root`` (``root`` starts a new chain, unrelated to the frames before it, whose
        first frames turn at ``after``) turned on from ``last`` at a turning speed and zoom rate that goes
        linearly, in time, from the one measured before the gap to ``after``; they are flagged held."""
        path = self.path
        before = self.speed(last)
        span = max(after[2] - before[2], 1e-6)
        for t in range(last + 1, root + 1):
            share = float(np.clip((t - 0.5 - before[2]) / span, 0.0, 1.0))
            turn = (1 - share) * before[0] + share * after[0]
            path.to_first[t] = path.to_first[t - 1] @ rotation_from_vector(turn)
            path.zoom[t] = path.zoom[t - 1] * np.exp((1 - share) * before[1] + share * after[1])
            path.quality[t] = HELD

    def interpolate(self, last: int, t: int) -> None:
        """Frames strictly between ``last`` and ``t`` (both known, in one chain): turned and zoomed evenly from
        one to the other; flagged held."""
        path = self.path
        turn = vector_from_rotation(path.to_first[last].T @ path.to_first[t])
        ratio = np.log(path.zoom[t] / path.zoom[last])
        for s in range(last + 1, t):
            share = (s - last) / (t - last)
            path.to_first[s] = path.to_first[last] @ rotation_from_vector(share * turn)
            path.zoom[s] = path.zoom[last] * np.exp(share * ratio)
            path.quality[s] = HELD

    def run(self) -> CameraPath:
        path, last = self.path, 0
        for t in range(len(path)):
            step = self.usable(t)
            if t == 0:   # the first frame defines the orientation the others are measured from
                self.known[0] = True
                path.quality[0] = TRACKED if step is not None else HELD
                continue
            if step is not None and step.reference_frame == t:   # a new chain, unrelated to the frames before
                after = self.speed_after(t, path.zoom[last])
                if after is not None:   # (a chain that ends at once tells nothing)
                    self.carry(last, t, after)
                    self.known[t], last = True, t
                continue
            if step is None or not self.known[step.reference_frame]:
                continue
            r = step.reference_frame
            turn = self.turn(step, path.zoom[r])
            # turn.rotation: camera r -> camera t; to_first(t) = to_first(r) @ turn^T
            path.to_first[t] = path.to_first[r] @ turn.rotation.T
            path.zoom[t] = path.zoom[r] * turn.zoom
            path.residual_px[t] = turn.residual_px * 640.0 / max(self.width, self.height)
            path.quality[t] = TRANSLATED if path.residual_px[t] > TRANSLATION_PX else TRACKED
            self.known[t] = True
            if t - last > 1:
                self.interpolate(last, t)
            last = t
        for t in range(last + 1, len(path)):   # after the last known frame: held
            path.to_first[t], path.zoom[t], path.quality[t] = path.to_first[last], path.zoom[last], HELD
        return path


def chain_camera_motion(motions: list[common_pb2.CameraMotion], focal_px: float, width: float, height: float,
                        frame_count: int) -> CameraPath:
    """The camera path of a video (see the module doc).

    Args:
        motions: the stored CameraMotion of the video's segments (any order); empty: a still camera.
        focal_px: focal length of the first frame, pixels of the ``width`` x ``height`` frame the 2D refers to.
        width, height: that frame size (the homographies are rescaled from the working size).
        frame_count: frames of the video.
    """
    if not motions:
        return CameraPath.still(frame_count)
    steps, work_width = _steps_by_frame(motions)
    scale = work_width / width if work_width > 0 else 1.0
    return _Chainer(steps, focal_px * scale, width * scale, height * scale, frame_count).run()


def estimate_focal(motions: list[common_pb2.CameraMotion], prior_px: float, width: float, height: float
                   ) -> float | None:
    """Focal length (pixels of the ``width`` x ``height`` frame) under which a turning and zooming camera
    best explains the steps, or None when the camera did not turn enough (:data:`FOCAL_MIN_TURN_DEG`) or the
    estimate is not clearly better than the prior (:data:`FOCAL_MIN_GAIN_PX`). Zoom between a step's
    keyframe and the first frame is taken from the chain under the prior."""
    if not motions:
        return None
    steps, work_width = _steps_by_frame(motions)
    scale = work_width / width if work_width > 0 else 1.0
    work_w, work_h = width * scale, height * scale
    frame_count = max(steps) + 1
    path = chain_camera_motion(motions, prior_px, width, height, frame_count)
    usable = [s for s in steps.values() if s.reliable and s.reference_frame != s.frame_index]
    turns = np.array([rotation_angle_deg(path.to_first[s.frame_index].T @ path.to_first[s.reference_frame])
                      for s in usable])
    if not usable or turns.max(initial=0.0) < FOCAL_MIN_TURN_DEG:
        return None
    chosen = [usable[i] for i in np.argsort(-turns)[:FOCAL_STEPS]]
    homographies = [(from_proto(s.homography).reshape(3, 3), path.zoom[s.reference_frame], _region(s))
                    for s in chosen]

    def cost(factor: float) -> float:
        focal = prior_px * scale * factor
        return float(np.median([rotation_zoom_from_homography(h, focal * z, work_w, work_h, region).residual_px
                                for h, z, region in homographies]))

    costs = np.array([cost(f) for f in FOCAL_SEARCH])
    best = int(np.argmin(costs))
    factor = FOCAL_SEARCH[best]
    if 0 < best < len(FOCAL_SEARCH) - 1:   # parabola through the best and its neighbours, in log focal
        x = np.log(FOCAL_SEARCH[best - 1:best + 2])
        a, b, _ = np.polyfit(x, costs[best - 1:best + 2], 2)
        if a > 0:
            factor = float(np.exp(np.clip(-b / (2 * a), x[0], x[2])))
    if cost(1.0) - cost(factor) < FOCAL_MIN_GAIN_PX:
        return None
    return float(prior_px * factor)


def translation_warning(path: CameraPath) -> str | None:
    """The job's warning when the camera seems to have moved, not only turned and zoomed."""
    tracked = np.isin(path.quality, (TRACKED, TRANSLATED))
    moved = path.quality == TRANSLATED
    if not tracked.any() or moved.sum() < TRANSLATION_WARN_SHARE * tracked.sum():
        return None
    frames = np.flatnonzero(moved)
    return (f"camera: in {moved.sum()} of {len(path)} frames (first {frames[0]}, last {frames[-1]}) the background "
            f"moved as a camera that only turns and zooms cannot explain: the camera itself probably moved "
            f"(walking with it, a moving car). World positions there assume a camera that only turns, and "
            f"the people's paths may be off by as much as the camera travelled")


def held_warning(path: CameraPath) -> str | None:
    """The job's warning when frames had too little background for the camera to be followed."""
    held = path.quality == HELD
    if not held.any():
        return None
    return (f"camera: {held.sum()} of {len(path)} frames showed too little background to follow the camera "
            f"(a person filling the picture, a blank wall, blur); their orientation is filled in from the frames "
            f"around them, at the camera's turning speed")


def video_camera(motions: list[common_pb2.CameraMotion], focal_px: float, width: float, height: float,
                 frame_count: int) -> tuple[CameraPath | None, float, list[str]]:
    """The camera of a video for the world placement: ``(path, focal length, warnings)``. Without
    ``motions``: no path (a still camera) and ``focal_px`` as given. With them: when ``focal_px`` is 0
    (no caller's value) the focal length estimated from the motions (:func:`estimate_focal`), else 0 (the
    prior); the path chained under that focal length, covering ``frame_count`` frames and every step."""
    if not motions:
        return None, focal_px, []
    frames = max([frame_count] + [s.frame_index + 1 for m in motions for s in m.steps])
    if focal_px <= 0:
        focal_px = estimate_focal(motions, focal_prior(width, height), width, height) or 0.0
    path = chain_camera_motion(motions, focal_px or focal_prior(width, height), width, height, frames)
    warnings = [w for w in (translation_warning(path), held_warning(path)) if w]
    return path, focal_px, warnings
