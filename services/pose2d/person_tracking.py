"""Tracking by detection: the people found in each frame get stable ids, also through occlusion.

The approach of SORT / ByteTrack / OC-SORT, sized for this stage:

* Each track has a constant-velocity Kalman filter on its box (centre x, y, width, height and their
  velocities), predicted one frame ahead before each frame's association.
* Association is one optimal assignment (``scipy.optimize.linear_sum_assignment``) per stage on a
  cost of box overlap (IoU of the observation with the predicted box) and keypoint similarity (an
  OKS-like score of the observation's keypoints against the track's last keypoints moved by the
  prediction), with a gate on the centre distance relative to the person's height, so that a pair
  that neither overlaps nor stands near the prediction is never matched. For a hidden track the
  overlap gives way to nearness to the prediction, and the pose is compared centre on centre.
* First the tracks seen on the previous frame, then the tracks hidden for a while: a hidden track's
  prediction keeps going at its last velocity, and it accepts an observation within a gate that
  widens with the time it has been hidden (up to ``max_hidden_s``, 2 s by default). An observation
  that matches no track starts a new one; a track hidden longer than ``max_hidden_s`` ends.
* On re-finding a hidden track, its filter is re-run along the straight line from its last
  observation to the new one (OC-SORT's observation-centric re-update), so the velocity after an
  occlusion is the one the person really had, not the drift accumulated while predicting blind.

An observation may say which track's region it was found in (``follows``: the keypoint model
followed that person from the previous frame); that makes the pair a little cheaper, never a match
on its own, so two people who cross and swap regions keep their ids when their motion says so.

Ids count from 0 in order of first appearance; the result is a pure function of the observations.
Why not a tracking library: the maintained ones on PyPI either bring heavy dependencies or
associate boxes only, and the keypoints are what tell two crossing people apart; the Kalman filter
and the assignment here are the small, standard parts of those methods.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

#: COCO-17 keypoint sigmas (the COCO keypoint evaluation's), for the keypoint similarity
COCO17_SIGMAS = np.array([.026, .025, .025, .035, .035, .079, .079, .072, .072, .062, .062, .107, .107,
                          .087, .087, .089, .089], np.float64)
MIN_KEYPOINT_SCORE = 0.3      # joints seen at least this well take part in the keypoint similarity
FOLLOW_BONUS = 0.1            # cost taken off when the observation came from the track's own region
MAX_COST = 0.9                # pairs costing more are not the same person


@dataclass(frozen=True)
class Observation:
    """A person seen in one frame: ``box`` (x0, y0, x1, y1) pixels, ``keypoints`` [17, 3] COCO-17
    (x, y, score) or None, ``score`` 0..1, and ``follows`` the id of the track whose region it was
    found in (-1: a new detection)."""

    box: tuple[float, float, float, float]
    keypoints: np.ndarray | None
    score: float
    follows: int = -1


@dataclass(frozen=True)
class TrackerOptions:
    fps: float = 30.0
    max_hidden_s: float = 2.0          # a track hidden this long keeps its id when found near its prediction
    gate_heights: float = 0.6          # largest centre distance, in person heights, for a track seen last frame
    hidden_gate_growth: float = 0.5    # ... plus this many heights per second hidden
    iou_weight: float = 0.5            # cost = 1 - (iou_weight x IoU + (1 - iou_weight) x keypoint similarity)


def _box_to_state(box) -> np.ndarray:
    x0, y0, x1, y1 = (float(v) for v in box)
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, 1.0), max(y1 - y0, 1.0)])


def _state_to_box(z: np.ndarray) -> np.ndarray:
    cx, cy, w, h = z[:4]
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


class BoxKalman:
    """Constant-velocity Kalman filter on (cx, cy, w, h), noise scaled by the box height as in DeepSORT
    (big and small people are followed alike). The four coordinates do not interact, so the filter is
    four independent (position, velocity) filters, updated together without matrix inverses."""

    def __init__(self, box):
        z = _box_to_state(box)
        self.x = np.stack([z, np.zeros(4)], axis=1)              # [4, 2]: value, velocity per coordinate
        h = z[3]
        self.P = np.zeros((4, 2, 2))
        self.P[:, 0, 0] = (0.1 * h) ** 2
        self.P[:, 1, 1] = np.square([0.1 * h, 0.1 * h, 0.05 * h, 0.05 * h])

    def predict(self) -> np.ndarray:
        h = max(self.x[3, 0], 1.0)
        self.x[:, 0] += self.x[:, 1]
        self.x[2:4, 0] = np.maximum(self.x[2:4, 0], 1.0)
        p = self.P
        p00 = p[:, 0, 0] + 2 * p[:, 0, 1] + p[:, 1, 1] + (0.05 * h) ** 2
        p01 = p[:, 0, 1] + p[:, 1, 1]
        p11 = p[:, 1, 1] + np.square([0.01 * h, 0.01 * h, 0.005 * h, 0.005 * h])
        self.P = np.stack([np.stack([p00, p01], -1), np.stack([p01, p11], -1)], -2)
        return self.box

    def update(self, box) -> None:
        z = _box_to_state(box)
        r = (0.05 * max(z[3], 1.0)) ** 2
        p = self.P
        s = p[:, 0, 0] + r
        k0, k1 = p[:, 0, 0] / s, p[:, 0, 1] / s
        residual = z - self.x[:, 0]
        self.x[:, 0] += k0 * residual
        self.x[:, 1] += k1 * residual
        p00, p01, p11 = (1 - k0) * p[:, 0, 0], (1 - k0) * p[:, 0, 1], p[:, 1, 1] - k1 * p[:, 0, 1]
        self.P = np.stack([np.stack([p00, p01], -1), np.stack([p01, p11], -1)], -2)

    @property
    def box(self) -> np.ndarray:
        return _state_to_box(self.x[:, 0])


@dataclass
class _Track:
    track_id: int
    kalman: BoxKalman
    last_box: np.ndarray
    last_keypoints: np.ndarray | None
    last_frame: int


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def keypoint_similarity(a: np.ndarray | None, b: np.ndarray | None, scale: float) -> float | None:
    """OKS-like similarity 0..1 of two COCO-17 poses over the joints both see (score >=
    ``MIN_KEYPOINT_SCORE``), with ``scale`` the person's size in pixels; None when fewer than three
    joints are shared."""
    if a is None or b is None or len(a) != len(COCO17_SIGMAS) or len(b) != len(COCO17_SIGMAS):
        return None
    both = (a[:, 2] >= MIN_KEYPOINT_SCORE) & (b[:, 2] >= MIN_KEYPOINT_SCORE)
    if both.sum() < 3:
        return None
    d2 = np.sum(np.square(a[both, :2] - b[both, :2]), axis=1)
    k2 = np.square(2 * COCO17_SIGMAS[both])
    return float(np.mean(np.exp(-d2 / (2 * max(scale, 1.0) ** 2 * k2))))


class PersonTracker:
    """Feed each frame's observations in order with ``update``; it returns their track ids."""

    def __init__(self, options: TrackerOptions | None = None):
        self.options = options or TrackerOptions()
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._frame = -1

    @property
    def max_hidden_frames(self) -> int:
        return max(1, round(self.options.max_hidden_s * self.options.fps))

    def last_boxes(self) -> dict[int, np.ndarray]:
        """The last observed box of every track still alive (seen or hidden), by id."""
        return {t.track_id: t.last_box for t in self._tracks}

    def _cost(self, track: _Track, predicted: np.ndarray, obs: Observation, hidden_frames: int) -> float:
        opts = self.options
        box = np.asarray(obs.box, np.float64)
        height = max(predicted[3] - predicted[1], box[3] - box[1], 1.0)
        ratio = (box[3] - box[1]) / max(predicted[3] - predicted[1], 1.0)
        if not 0.5 <= ratio <= 2.0:
            return np.inf
        centre, expected = _centre(box), _centre(predicted)
        distance = float(np.hypot(*(centre - expected))) / height
        gate = opts.gate_heights + opts.hidden_gate_growth * hidden_frames / max(opts.fps, 1.0)
        if distance > gate:
            return np.inf
        proximity = max(0.0, 1.0 - distance / gate)
        if hidden_frames == 0:
            # seen last frame: overlap with the prediction (proximity once the boxes no longer touch),
            # and the keypoints where the prediction moves them: position and pose at once
            motion = max(box_iou(predicted, box), 0.5 * proximity)
            offset = expected - _centre(track.last_box)
        else:
            # hidden for a while: the prediction is only roughly right, so nearness to it, and the pose
            # compared centre on centre
            motion = proximity
            offset = centre - _centre(track.last_box)
        moved = None if track.last_keypoints is None else track.last_keypoints.copy()
        if moved is not None:
            moved[:, :2] += offset
        similarity = keypoint_similarity(moved, obs.keypoints, height)
        if similarity is None:
            cost = 1.0 - motion
        else:
            cost = 1.0 - (opts.iou_weight * motion + (1 - opts.iou_weight) * similarity)
        if obs.follows == track.track_id:
            cost -= FOLLOW_BONUS
        return cost if cost <= MAX_COST else np.inf

    def _assign(self, tracks: list[_Track], predicted: list[np.ndarray], observations: list[Observation],
                todo: list[int]) -> list[tuple[int, int]]:
        if not tracks or not todo:
            return []
        cost = np.full((len(tracks), len(todo)), np.inf)
        for ti, track in enumerate(tracks):
            hidden = self._frame - track.last_frame - 1
            for oj, o in enumerate(todo):
                cost[ti, oj] = self._cost(track, predicted[ti], observations[o], hidden)
        finite = np.where(np.isfinite(cost), cost, 1e6)
        rows, cols = linear_sum_assignment(finite)
        return [(int(r), todo[int(c)]) for r, c in zip(rows, cols) if np.isfinite(cost[r, c])]

    def update(self, observations: list[Observation]) -> list[int]:
        """The track id of each observation of the next frame (in the order given)."""
        self._frame += 1
        frame = self._frame
        predicted = {id(t): t.kalman.predict() for t in self._tracks}
        ids = [-1] * len(observations)
        todo = sorted(range(len(observations)), key=lambda i: -observations[i].score)
        for stage in (lambda t: t.last_frame == frame - 1, lambda t: t.last_frame < frame - 1):
            group = [t for t in self._tracks if stage(t)]
            for ti, o in self._assign(group, [predicted[id(t)] for t in group], observations, todo):
                self._observe(group[ti], observations[o], frame)
                ids[o] = group[ti].track_id
            todo = [o for o in todo if ids[o] < 0]
        for o in sorted(todo):
            obs = observations[o]
            track = _Track(self._next_id, BoxKalman(obs.box), np.asarray(obs.box, np.float64), obs.keypoints, frame)
            self._tracks.append(track)
            ids[o] = track.track_id
            self._next_id += 1
        self._tracks = [t for t in self._tracks if frame - t.last_frame <= self.max_hidden_frames]
        return ids

    def _observe(self, track: _Track, obs: Observation, frame: int) -> None:
        box = np.asarray(obs.box, np.float64)
        gap = frame - track.last_frame
        if gap > 1:
            # observation-centric re-update: re-run the filter along the straight line from the last
            # observation to this one, as if the person had been seen on the way
            kalman = BoxKalman(track.last_box)
            for k in range(1, gap + 1):
                kalman.predict()
                kalman.update(track.last_box + (box - track.last_box) * k / gap)
            track.kalman = kalman
        else:
            track.kalman.update(box)
        track.last_box = box
        track.last_frame = frame
        if obs.keypoints is not None:
            track.last_keypoints = np.asarray(obs.keypoints, np.float64)
