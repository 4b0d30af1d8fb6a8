"""Linking per-frame 2D detections into person tracks across the whole video.

The 2D stage tracks people within a segment only; its track ids restart in every segment. Here
detections are linked frame to frame over the whole video by greedy matching on a pose distance
(mean joint distance of confident joints, relative to the person's size), so one person keeps one
track across segment seams and short occlusions.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hpe3d.v1 import common_pb2
from services.common.arrays import from_proto


@dataclass
class Detection:
    frame: int
    keypoints: np.ndarray  # [17, 3] COCO-17 x, y (pixels), score
    score: float


@dataclass
class PersonTrack:
    """One person over consecutive frames; frames without a detection have all scores 0."""

    track_id: int
    first_frame: int
    keypoints: list[np.ndarray] = field(default_factory=list)  # one [17, 3] per frame
    last_seen: int = -1

    @property
    def frame_count(self) -> int:
        return len(self.keypoints)

    @property
    def detected_frames(self) -> int:
        return sum(1 for k in self.keypoints if k[:, 2].max() > 0)

    def as_array(self) -> np.ndarray:
        return np.stack(self.keypoints).astype(np.float32)

    def last_pose(self) -> np.ndarray:
        return self.keypoints[self.last_seen - self.first_frame]


def detections_from_frames(frames: list[common_pb2.FramePoses2D]) -> dict[int, list[Detection]]:
    out: dict[int, list[Detection]] = {}
    for frame in frames:
        for person in frame.persons:
            kp = from_proto(person.coco17)
            if kp.shape != (17, 3):
                raise ValueError(f"frame {frame.frame_index}: coco17 has shape {kp.shape}, expected (17, 3)")
            out.setdefault(frame.frame_index, []).append(Detection(frame.frame_index, kp, person.score))
    return out


def pose_distance(a: np.ndarray, b: np.ndarray, min_score: float = 0.3) -> float:
    """Mean distance between the joints both poses see, divided by the size of pose ``a``.

    Returns ``inf`` when fewer than three joints are seen by both.
    """
    both = (a[:, 2] >= min_score) & (b[:, 2] >= min_score)
    if both.sum() < 3:
        return float("inf")
    seen = a[a[:, 2] >= min_score, :2]
    size = max(float(np.ptp(seen[:, 0])), float(np.ptp(seen[:, 1])), 1.0)
    return float(np.linalg.norm(a[both, :2] - b[both, :2], axis=1).mean() / size)


def link_tracks(detections: dict[int, list[Detection]], frame_count: int, max_gap: int = 15,
                max_distance: float = 0.5) -> list[PersonTrack]:
    """Greedy frame-to-frame association.

    Args:
        detections: detections per frame index.
        frame_count: frames in the video; frames without detections still advance time.
        max_gap: a track that has not been matched for this many frames is closed.
        max_distance: largest ``pose_distance`` (in person sizes) accepted as the same person.
    """
    active: list[PersonTrack] = []
    closed: list[PersonTrack] = []
    next_id = 0
    empty = np.zeros((17, 3), dtype=np.float32)
    for f in range(frame_count):
        dets = sorted(detections.get(f, []), key=lambda d: -d.score)
        pairs = sorted(
            ((pose_distance(t.last_pose(), d.keypoints), ti, di)
             for ti, t in enumerate(active) for di, d in enumerate(dets)),
            key=lambda p: p[0])
        used_t: set[int] = set()
        used_d: set[int] = set()
        matched: dict[int, Detection] = {}
        for dist, ti, di in pairs:
            if dist > max_distance or ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            matched[ti] = dets[di]
        still: list[PersonTrack] = []
        for ti, track in enumerate(active):
            if ti in matched:
                track.keypoints.append(matched[ti].keypoints)
                track.last_seen = f
                still.append(track)
            elif f - track.last_seen <= max_gap:
                track.keypoints.append(empty)
                still.append(track)
            else:
                closed.append(track)
        for di, det in enumerate(dets):
            if di not in used_d:
                still.append(PersonTrack(next_id, f, [det.keypoints], f))
                next_id += 1
        active = still
    closed.extend(active)
    for track in closed:  # drop the trailing frames after the last detection
        del track.keypoints[track.last_seen - track.first_frame + 1:]
    return sorted(closed, key=lambda t: t.track_id)
