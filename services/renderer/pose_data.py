"""The poses a render needs, read from the stored Poses2D segments and Poses3D, indexed by frame.

Per frame, the persons to draw and export are the 3D tracks that cover it (their ``track_id`` is
the lifter's, stable over the whole video; their 2D keypoints are the lifter's gap-filled COCO-17
input). A frame no 3D track covers falls back to the raw 2D detections of that frame (segment-local
track ids, no 3D).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpe3d.v1 import common_pb2
from services.common.arrays import from_proto


@dataclass(frozen=True)
class PersonPose:
    """One person in one frame. ``keypoints_2d`` [17, 3] COCO-17 (x px, y px, score) of the
    original, upright frame; ``root_relative`` / ``grounded`` [17, 3] Human3.6M-17 metres, or None."""

    track_id: int
    keypoints_2d: np.ndarray | None
    root_relative: np.ndarray | None
    grounded: np.ndarray | None


@dataclass(frozen=True)
class Track:
    track_id: int
    first_frame: int
    root_relative: np.ndarray   # [n, 17, 3] metres
    grounded: np.ndarray        # [n, 17, 3] metres, feet on y = 0
    keypoints_2d: np.ndarray | None  # [n, 17, 3] or None

    @property
    def frame_count(self) -> int:
        return int(self.grounded.shape[0])


class PoseTimeline:
    """Poses by frame index, built from stored messages."""

    def __init__(self, poses2d: list[common_pb2.Poses2D], poses3d: common_pb2.Poses3D | None):
        self.raw_2d: dict[int, list[PersonPose]] = {}
        for segment in poses2d:
            for frame in segment.frames:
                self.raw_2d[frame.frame_index] = [
                    PersonPose(p.track_id, from_proto(p.coco17).reshape(17, 3), None, None)
                    for p in frame.persons if len(p.coco17.values) == 51]
        self.tracks: list[Track] = []
        for t in (poses3d.tracks if poses3d is not None else []):
            grounded = from_proto(t.grounded).reshape(-1, 17, 3)
            root = from_proto(t.root_relative).reshape(-1, 17, 3) if t.root_relative.values else grounded
            kp2d = from_proto(t.keypoints2d).reshape(-1, 17, 3) if t.keypoints2d.values else None
            self.tracks.append(Track(t.track_id, t.first_frame, root, grounded, kp2d))

    def persons(self, frame_index: int) -> list[PersonPose]:
        out = []
        for t in self.tracks:
            i = frame_index - t.first_frame
            if 0 <= i < t.frame_count:
                kp = t.keypoints_2d[i] if t.keypoints_2d is not None else self._raw_for(frame_index, t.track_id)
                out.append(PersonPose(t.track_id, kp, t.root_relative[i], t.grounded[i]))
        return out or self.raw_2d.get(frame_index, [])

    def _raw_for(self, frame_index: int, track_id: int) -> np.ndarray | None:
        for p in self.raw_2d.get(frame_index, []):
            if p.track_id == track_id:
                return p.keypoints_2d
        return None

    def all_grounded(self) -> np.ndarray:
        """Every grounded joint of every track, [N, 3] metres (empty when there are no tracks)."""
        if not self.tracks:
            return np.zeros((0, 3), np.float32)
        return np.concatenate([t.grounded.reshape(-1, 3) for t in self.tracks])
