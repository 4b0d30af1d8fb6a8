"""Finds and follows up to ``max_persons`` people through consecutive frames, BlazePose-style, with
BlazePose's own detector: the former path of the stage, kept as MediaPipe's pose graph runs (checked
against it) and measured beside the stage's detector path by ``bench/eval_2d.py``; the stage runs
``people.py``.

Per frame:

1. Every tracked person's landmark model runs on the ROI predicted from their previous landmarks
   (auxiliary landmarks 33/34), all persons in one batched call. A person whose pose flag falls
   below 0.5 is lost.
2. The detector runs on this frame when fewer than ``max_persons`` are tracked and either nobody
   is tracked, someone was just lost, or ``detect_interval`` frames have passed since it last ran.
   With ``search_tiles`` the detector also sees square tiles of a wide frame, where people too
   small for the letterboxed whole frame are twice as big (all windows in one batched call).
   Detections of a tracked person (hip centre inside their landmarks' box, or near their hip
   centre) are dropped;
   the best remaining ones get an ROI and one batched landmark call; those with a pose flag become
   new tracks.
3. Two tracks that converged on one person (body boxes overlapping by more than
   ``duplicate_iou``) are merged: the older track stays.

Unlike MediaPipe's live graph, a person lost (or first seen) on frame t is searched for on frame t
itself, not t+1: nothing is lost by waiting, we are offline. Track ids are stable within one call
and count from 0 in order of first appearance; the result is a pure function of the frames.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from services.pose2d.blazepose import (AUX_CENTRE, MIN_DETECTION_SCORE, MIN_POSE_FLAG, Detection, Landmarks,
                                       Roi, box_iou, decode_detections, decode_landmarks, detector_input,
                                       landmark_input, same_place, square_tiles)
from services.pose2d.client import BlazePoseModels


@dataclass(frozen=True)
class EstimatorOptions:
    max_persons: int = 2
    detect_interval: int = 10          # frames between detector runs while fewer than max_persons are tracked
    min_detection_score: float = MIN_DETECTION_SCORE
    min_pose_flag: float = MIN_POSE_FLAG
    duplicate_iou: float = 0.5         # two tracks whose body boxes overlap more are one person
    refine_with_heatmap: bool = True   # MediaPipe's heatmap refinement of x, y (costs a 640 KB output per crop)
    search_tiles: bool = True          # also run the detector on square tiles of a wide frame (small people)


@dataclass(frozen=True)
class TrackedPose:
    track_id: int
    landmarks: Landmarks


class PoseTracker:
    """Feed frames in order with ``update``; each call returns the people found in that frame."""

    def __init__(self, models: BlazePoseModels, options: EstimatorOptions | None = None):
        self.models = models
        self.options = options or EstimatorOptions()
        self._rois: dict[int, Roi] = {}      # track id -> ROI for the next frame
        self._next_id = 0
        self._since_detection = 0
        self.detector_runs = 0
        self.landmark_crops = 0

    def _landmarks(self, frame: np.ndarray, rois: list[Roi]) -> list[Landmarks]:
        size = self.models.info.landmark_size
        crops = np.empty((len(rois), size, size, 3), np.uint8)
        for i, roi in enumerate(rois):
            landmark_input(frame, roi, size, out=crops[i])
        out = self.models.landmarks(crops, heatmap=self.options.refine_with_heatmap)
        self.landmark_crops += len(rois)
        heatmaps = out.get("heatmap")
        return [decode_landmarks(out["landmarks"][i], float(out["pose_flag"][i].ravel()[0]), roi,
                                 None if heatmaps is None else heatmaps[i], crop_size=size)
                for i, roi in enumerate(rois)]

    def _detect(self, frame: np.ndarray) -> list[Detection]:
        """Detections in the whole frame and, with ``search_tiles``, in square tiles of it (one
        batched call), merged: best first, one per person (hip centres close together merge)."""
        h, w = frame.shape[:2]
        windows = [(0, 0, w, h)]
        if self.options.search_tiles:
            windows += [(x, y, side, side) for x, y, side in square_tiles(w, h)]
        size = self.models.info.detector_size
        tensors = np.empty((len(windows), size, size, 3), np.uint8)
        letterboxes = []
        for i, (x, y, ww, hh) in enumerate(windows):
            tensors[i], letterbox = detector_input(frame[y:y + hh, x:x + ww], size)
            letterboxes.append(letterbox)
        regressors, scores = self.models.detect(tensors)
        self.detector_runs += len(windows)
        found = []
        for i, (x, y, _, _) in enumerate(windows):
            found += [d.shifted(x, y) for d in decode_detections(regressors[i], scores[i], letterboxes[i],
                                                                 min_score=self.options.min_detection_score)]
        kept: list[Detection] = []
        for det in sorted(found, key=lambda d: -d.score):
            if not any(same_place(det.keypoints[0], det.reach, k.keypoints[0], k.reach) for k in kept):
                kept.append(det)
        return kept

    def update(self, frame: np.ndarray) -> list[TrackedPose]:
        opts = self.options
        found: list[TrackedPose] = []
        if self._rois:
            ids = list(self._rois)
            for tid, lm in zip(ids, self._landmarks(frame, [self._rois[i] for i in ids])):
                if lm.pose_flag >= opts.min_pose_flag:
                    found.append(TrackedPose(tid, lm))
        lost = len(found) < len(self._rois)
        found = self._merge_duplicates(found)
        self._since_detection += 1
        if len(found) < opts.max_persons and (
                lost or not found or self._since_detection >= opts.detect_interval):
            self._since_detection = 0
            found = self._merge_duplicates(found + self._new_people(frame, found))
        self._rois = {p.track_id: p.landmarks.next_roi() for p in found}
        return sorted(found, key=lambda p: p.track_id)

    def _new_people(self, frame: np.ndarray, tracked: list[TrackedPose]) -> list[TrackedPose]:
        opts = self.options
        rois: list[Roi] = []
        for det in self._detect(frame):
            if len(tracked) + len(rois) >= opts.max_persons:
                break
            hip = det.keypoints[0]
            if det.reach < 1 or any(p.landmarks.contains(hip) or same_place(
                    hip, det.reach, p.landmarks.points[AUX_CENTRE, :2], p.landmarks.reach) for p in tracked):
                continue   # a person already followed
            rois.append(det.roi())
        people = []
        if rois:
            for lm in self._landmarks(frame, rois):
                if lm.pose_flag >= opts.min_pose_flag:
                    people.append(TrackedPose(self._next_id, lm))
                    self._next_id += 1
        return people

    def _merge_duplicates(self, people: list[TrackedPose]) -> list[TrackedPose]:
        kept: list[TrackedPose] = []
        for person in sorted(people, key=lambda p: p.track_id):
            box = person.landmarks.body_box()
            if all(box_iou(box, other.landmarks.body_box()) <= self.options.duplicate_iou for other in kept):
                kept.append(person)
        return kept


def track_poses(frames: Iterable[np.ndarray], models: BlazePoseModels,
                options: EstimatorOptions | None = None) -> Iterator[list[TrackedPose]]:
    """The people of every frame, in order (a generator: frames are pulled one at a time)."""
    tracker = PoseTracker(models, options)
    for frame in frames:
        yield tracker.update(frame)
