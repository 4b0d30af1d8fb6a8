"""How the camera moved, from the background of the frames: one homography per frame to a keyframe.

:class:`BackgroundTracker` takes the frames of a video in order (grey, at the working size). On a
keyframe it picks corners (``cv2.goodFeaturesToTrack``), follows them from frame to frame
(``cv2.calcOpticalFlowPyrLK``) and fits, per frame, one homography from the keyframe's positions of
the points to their current ones (``cv2.findHomography`` with RANSAC, which leaves out points on
moving people). A camera that only turns and zooms sees the whole scene move by one homography
(:mod:`services.common.rotating_camera`), so the fit says how the camera turned since the keyframe;
the lifter solves it for the rotation and zoom with its focal length and chains the keyframes.
Steps are measured from the keyframe, not from the previous frame, so the chain from the first frame
multiplies one step per keyframe, not one per frame, and drifts that much less.

A new keyframe is taken when fewer than :data:`REKEY_SHARE` of the keyframe's points are still
followed and explained by the fit (points left the picture, or were hidden). A frame whose fit rests on
fewer than :data:`MIN_INLIERS` points, or explains under :data:`MIN_INLIER_RATIO` of them, is flagged
unreliable (too little background: a person fills the frame, a blank wall, motion blur), not guessed.
When the points are lost, the next frame that would start a new keyframe is first matched straight to
the last reliable frame, if that is at most :data:`BRIDGE_FRAMES` back (its background points followed
there in one jump, checked forwards and backwards, one homography by RANSAC): when it matches, the chain
goes on (its ``reference_frame`` is that last reliable frame) and the lifter fills the frames between;
when not, a new chain starts (``reference_frame`` equal to its own frame) and the lifter carries the
orientation across the gap at the camera's turning speed (:mod:`services.lifter3d.camera_path`).

Pixels the caller knows are people (``exclude``, e.g. their 2D boxes) are never picked nor used in a
fit; without it RANSAC treats them as outliers.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from hpe3d.v1 import common_pb2
from services.common.arrays import to_proto

#: Longer side, pixels, of the grey image the points are followed in (a 640 px working frame is halved).
TRACK_SIDE = 320
#: Corners picked per keyframe: at most :data:`CELL_POINTS` in each cell of a :data:`GRID` (columns, rows)
#: over the frame, so that a textured shirt close to the camera cannot outnumber the background; their least
#: spacing in pixels of the tracking image.
GRID = (6, 4)
CELL_POINTS = 12
MIN_SPACING_PX = 6
#: A point that the fit leaves out in this many frames running is dropped (it lies on someone moving); fewer,
#: and it stays (one poor fit must not throw the background away).
DROP_AFTER_OUTLIER_FRAMES = 3
#: New corners of a keyframe keep this far (pixels of the tracking image) from the points kept and from
#: points the fits left out (people).
AVOID_PX = 10
#: RANSAC's inlier distance, pixels of the tracking image.
RANSAC_PX = 1.0
#: A fit on fewer points than this, or explaining a smaller share of the followed points, is unreliable.
MIN_INLIERS = 20
MIN_INLIER_RATIO = 0.5
#: A new keyframe is taken when fewer than this share of its points (or fewer than :data:`REKEY_MIN`) remain.
REKEY_SHARE = 0.5
REKEY_MIN = 40
#: After the points are lost, frames are matched to the last reliable frame for at most this many frames ...
BRIDGE_FRAMES = 30
#: ... with this RANSAC inlier distance (pixels of the tracking image; one jump over several frames is followed
#: less precisely than frame to frame), keeping points that return within :data:`BRIDGE_RETURN_PX` when
#: followed back.
BRIDGE_RANSAC_PX = 1.5
BRIDGE_RETURN_PX = 0.5
_LK = dict(winSize=(15, 15), maxLevel=3, criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03))
_LK_BRIDGE = dict(_LK, winSize=(21, 21), maxLevel=5)


@dataclass(frozen=True)
class BackgroundStep:
    """The background of one frame against its keyframe.

    ``homography``: ``[3, 3]`` pixels of ``reference_frame`` -> pixels of ``frame_index`` (frames at the
    size given to the tracker); identity when ``reference_frame == frame_index`` (the first frame, or a
    new chain after the background was lost). ``points``: background points the fit used (its inliers);
    ``inlier_ratio``: the share of the points followed that the fit explains (of the background points of the
    previous frame when there are enough, so that new corners on people do not lower it); ``reliable``: enough background for the fit;
    ``support``: the box (x0, y0, x1, y1 pixels of the reference frame) the inliers span, where the homography is
    measured rather than extrapolated."""

    frame_index: int
    reference_frame: int
    homography: np.ndarray
    points: int
    inlier_ratio: float
    reliable: bool
    support: tuple[float, float, float, float]

    def to_proto(self) -> common_pb2.CameraStep:
        return common_pb2.CameraStep(frame_index=self.frame_index, reference_frame=self.reference_frame,
                                     homography=to_proto(self.homography), points=self.points,
                                     inlier_ratio=self.inlier_ratio, reliable=self.reliable,
                                     support=common_pb2.BoundingBox(x_min=self.support[0], y_min=self.support[1],
                                                                    x_max=self.support[2], y_max=self.support[3]))


class BackgroundTracker:
    """Follows the background of one video's frames, given in order (see the module doc)."""

    def __init__(self, width: int, height: int):
        if width <= 0 or height <= 0:
            raise ValueError(f"frame size must be positive, got {width}x{height}")
        self.width, self.height = width, height
        self.scale = min(1.0, TRACK_SIDE / max(width, height))
        self.track_size = (max(8, round(width * self.scale)), max(8, round(height * self.scale)))
        self._previous: np.ndarray | None = None   # tracking image of the previous frame
        self._key_frame = -1
        self._key_points = np.zeros((0, 2), np.float32)   # keyframe positions, tracking pixels
        self._points = np.zeros((0, 2), np.float32)       # the same points in the previous frame
        self._key_count = 0
        self._outlier_run = np.zeros(0, int)   # frames running each point was left out of the fit
        self._trusted = np.zeros(0, bool)      # the point was background (an inlier) in the previous frame
        self._last = np.eye(3)   # homography keyframe -> previous frame, tracking pixels
        self._lost = True   # no keyframe yet, or its points were lost: the next frame bridges or starts a chain
        # the last reliable frame: its index, tracking image and background points (for a bridge over a gap)
        self._anchor: tuple[int, np.ndarray, np.ndarray] | None = None

    def _tracking_image(self, grey: np.ndarray) -> np.ndarray:
        if grey.shape[:2] != (self.height, self.width):
            raise ValueError(f"frame is {grey.shape[1]}x{grey.shape[0]}, the tracker's size is "
                             f"{self.width}x{self.height}")
        return grey if self.scale == 1.0 else cv2.resize(grey, self.track_size, interpolation=cv2.INTER_AREA)

    def _mask(self, exclude: np.ndarray | None) -> np.ndarray | None:
        if exclude is None:
            return None
        allowed = (~np.asarray(exclude, bool)).astype(np.uint8) * 255
        return cv2.resize(allowed, self.track_size, interpolation=cv2.INTER_NEAREST)

    def _corners(self, image: np.ndarray, mask: np.ndarray | None, avoid: np.ndarray) -> np.ndarray:
        """New corners spread over the frame: the strongest :data:`CELL_POINTS` of each grid cell, counting
        the points in ``avoid`` (points kept, or on people), and none within :data:`AVOID_PX` of those."""
        columns, rows = GRID
        w, h = self.track_size
        allowed = mask.copy() if mask is not None else np.full((h, w), 255, np.uint8)
        for x, y in avoid.astype(int):
            cv2.circle(allowed, (int(x), int(y)), AVOID_PX, 0, -1)
        found = cv2.goodFeaturesToTrack(image, 4 * columns * rows * CELL_POINTS, 0.01, MIN_SPACING_PX,
                                        mask=allowed, blockSize=7)
        if found is None:
            return np.zeros((0, 2), np.float32)
        points = found.reshape(-1, 2)   # strongest first

        def cells(p: np.ndarray) -> np.ndarray:
            return (np.minimum(p[:, 0] * columns // w, columns - 1) * rows
                    + np.minimum(p[:, 1] * rows // h, rows - 1)).astype(int)

        taken = np.bincount(cells(avoid), minlength=columns * rows) if len(avoid) else np.zeros(columns * rows, int)
        cell = cells(points)
        order = np.argsort(cell, kind="stable")
        rank = np.empty(len(points), int)
        starts = np.searchsorted(cell[order], np.arange(columns * rows))
        rank[order] = np.arange(len(points)) - starts[cell[order]]
        return points[rank + taken[cell] < CELL_POINTS]

    def _start_keyframe(self, frame_index: int, image: np.ndarray, mask: np.ndarray | None,
                        background: np.ndarray | None = None, people: np.ndarray | None = None) -> None:
        """Make ``frame_index`` the keyframe: the ``background`` points (followed so far, trusted) stay, new
        corners join them away from them and from ``people`` (points the fits left out)."""
        background = np.zeros((0, 2), np.float32) if background is None else background
        people = np.zeros((0, 2), np.float32) if people is None else people
        fresh = self._corners(image, mask, np.concatenate([background, people]))
        points = np.concatenate([background, fresh]).astype(np.float32)
        self._key_frame, self._key_points, self._points = frame_index, points, points.copy()
        self._trusted = np.arange(len(points)) < len(background)
        self._outlier_run = np.zeros(len(points), int)
        self._last = np.eye(3)
        self._key_count = len(points)
        self._lost = len(points) < MIN_INLIERS

    def _fit(self, key: np.ndarray, now: np.ndarray, trusted: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """Homography keyframe -> now (tracking pixels) and its inliers among the points.

        The inliers are chosen first with a stiff model, so that a large moving person cannot bend an
        8-parameter homography towards their own motion: the keyframe points are carried by the last
        frame's homography to where the camera's motion so far puts them, and what remains (the camera's
        motion over one frame: a shift, turn and scale) is fitted by RANSAC
        (``cv2.estimateAffinePartial2D``); a point on someone who moved since the keyframe lies off it.
        When enough ``trusted`` points (the background of earlier frames) are followed, only they choose
        the model, so new corners on a person cannot take the fit over. The homography is then fitted
        (RANSAC again) to the chosen points, and every point it explains is an inlier."""
        none = np.zeros(len(key), bool)
        voters = trusted if trusted.sum() >= MIN_INLIERS else np.ones(len(key), bool)
        if voters.sum() < MIN_INLIERS:
            return None, none
        predicted = cv2.perspectiveTransform(key.reshape(-1, 1, 2), self._last).reshape(-1, 2)
        increment, chosen = cv2.estimateAffinePartial2D(predicted[voters], now[voters], method=cv2.RANSAC,
                                                        ransacReprojThreshold=RANSAC_PX, maxIters=500,
                                                        confidence=0.995)
        if increment is None or chosen.sum() < MIN_INLIERS:
            return None, none
        picked = np.flatnonzero(voters)[chosen.ravel().astype(bool)]
        homography, _ = cv2.findHomography(key[picked], now[picked], cv2.RANSAC, RANSAC_PX, maxIters=500,
                                           confidence=0.995)
        if homography is None:
            return None, none
        off = np.linalg.norm(cv2.perspectiveTransform(key.reshape(-1, 1, 2), homography).reshape(-1, 2) - now, axis=1)
        return homography, off <= RANSAC_PX

    def _bridge(self, frame_index: int, image: np.ndarray, mask: np.ndarray | None) -> BackgroundStep | None:
        """Match ``image`` straight to the last reliable frame (see the module doc): the step from it when
        enough of its background points are found again and one homography explains them, else None."""
        anchor_frame, anchor_image, points = self._anchor
        if len(points) < MIN_INLIERS:
            return None
        start = points.reshape(-1, 1, 2)
        moved, status, _ = cv2.calcOpticalFlowPyrLK(anchor_image, image, start, None, **_LK_BRIDGE)
        back, status_back, _ = cv2.calcOpticalFlowPyrLK(image, anchor_image, moved, None, **_LK_BRIDGE)
        moved, back = moved.reshape(-1, 2), back.reshape(-1, 2)
        w, h = self.track_size
        ok = ((status.ravel() == 1) & (status_back.ravel() == 1)
              & (np.linalg.norm(back - points, axis=1) < BRIDGE_RETURN_PX)
              & (moved[:, 0] >= 0) & (moved[:, 0] < w) & (moved[:, 1] >= 0) & (moved[:, 1] < h))
        if mask is not None:
            inside = moved[ok].astype(int)
            ok[np.flatnonzero(ok)] = mask[inside[:, 1], inside[:, 0]] > 0
        if ok.sum() < MIN_INLIERS:
            return None
        key, now = points[ok], moved[ok]
        homography, chosen = cv2.findHomography(key, now, cv2.RANSAC, BRIDGE_RANSAC_PX, maxIters=1000,
                                                confidence=0.995)
        if homography is None:
            return None
        inliers = chosen.ravel().astype(bool)
        count = int(inliers.sum())
        if count < MIN_INLIERS or count < MIN_INLIER_RATIO * len(points):
            return None
        step = BackgroundStep(frame_index, anchor_frame, self._full_size(homography), count, count / len(points),
                              True, self._support(key[inliers]))
        self._start_keyframe(frame_index, image, mask, now[inliers], now[~inliers])
        self._anchor = (frame_index, image, now[inliers])
        return step

    def _support(self, points: np.ndarray) -> tuple[float, float, float, float]:
        """Box spanned by ``points`` (tracking pixels; the middle 96 % of them), in frame pixels."""
        if len(points) < 2:
            return (0.0, 0.0, 0.0, 0.0)
        lo, hi = np.percentile(points, [2, 98], axis=0) / self.scale
        return (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))

    def _full_size(self, homography: np.ndarray) -> np.ndarray:
        """A homography of tracking pixels as one of the tracker's frame pixels."""
        h = np.array(homography, np.float64)   # diag(1/s, 1/s, 1) @ H @ diag(s, s, 1), written out
        h[:2, 2] /= self.scale
        h[2, :2] *= self.scale
        return h / h[2, 2]

    def add(self, frame_index: int, grey: np.ndarray, exclude: np.ndarray | None = None) -> BackgroundStep:
        """The step of the next frame: ``grey`` ``[height, width]`` uint8; ``exclude`` optional boolean mask
        of the same size, True on pixels not to use (people)."""
        image = self._tracking_image(grey)
        mask = self._mask(exclude)
        previous, self._previous = self._previous, image
        if previous is None or self._lost or not len(self._points):
            if self._anchor is not None and frame_index - self._anchor[0] <= BRIDGE_FRAMES:
                step = self._bridge(frame_index, image, mask)
                if step is not None:
                    return step
            self._start_keyframe(frame_index, image, mask)
            if not self._lost:
                self._anchor = (frame_index, image, self._points.copy())
            return BackgroundStep(frame_index, frame_index, np.eye(3), self._key_count, 1.0, not self._lost,
                                  self._support(self._points))
        moved, status, _ = cv2.calcOpticalFlowPyrLK(previous, image, self._points.reshape(-1, 1, 2), None, **_LK)
        moved = moved.reshape(-1, 2)
        w, h = self.track_size
        ok = (status.ravel() == 1) & (moved[:, 0] >= 0) & (moved[:, 0] < w) & (moved[:, 1] >= 0) & (moved[:, 1] < h)
        if mask is not None:
            inside = moved[ok].astype(int)
            ok[np.flatnonzero(ok)] = mask[inside[:, 1], inside[:, 0]] > 0
        key, now = self._key_points[ok], moved[ok]
        trusted, outlier_run = self._trusted[ok], self._outlier_run[ok]
        homography, inliers = self._fit(key, now, trusted)
        count = int(inliers.sum())
        voters = trusted if trusted.sum() >= MIN_INLIERS else np.ones(len(key), bool)
        ratio = float(inliers[voters].mean()) if voters.any() else 0.0
        reliable = homography is not None and count >= MIN_INLIERS and ratio >= MIN_INLIER_RATIO
        step = BackgroundStep(frame_index, self._key_frame,
                              self._full_size(homography) if homography is not None else np.eye(3),
                              count, float(ratio), bool(reliable), self._support(key[inliers]))
        if homography is None or count < MIN_INLIERS:   # the background is lost: the next frame starts a chain
            self._lost = True
            return step
        self._last = homography
        outlier_run = np.where(inliers, 0, outlier_run + 1)
        keep = outlier_run < DROP_AFTER_OUTLIER_FRAMES
        self._key_points, self._points = key[keep], now[keep]
        self._trusted, self._outlier_run = inliers[keep], outlier_run[keep]
        if reliable:
            self._anchor = (frame_index, image, now[inliers])
            if count < REKEY_SHARE * self._key_count or count < REKEY_MIN:
                self._start_keyframe(frame_index, image, mask, now[inliers], now[~inliers])  # chained: step known
        return step


def camera_motion(steps: list[BackgroundStep], start_frame: int, frame_count: int, width: int,
                  height: int) -> common_pb2.CameraMotion:
    """The stored form of a segment's steps (frames ``[start_frame, start_frame + frame_count)``; a step of
    the frame before them, which only anchors the segment to the previous one, is left out)."""
    motion = common_pb2.CameraMotion(start_frame=start_frame, frame_count=frame_count, width=width, height=height)
    motion.steps.extend(s.to_proto() for s in steps if start_frame <= s.frame_index < start_frame + frame_count)
    return motion
