"""Linking per-frame 2D detections into person tracks across the whole video.

The 2D stage tracks people within a segment only; its track ids restart in every segment. Here
detections are linked frame to frame over the whole video by greedy matching on a pose distance
(mean joint distance of confident joints, relative to the person's size) between each detection and
where the track is expected to be: its last pose moved on at the track's recent image velocity, so two
people who cross while undetected (an occlusion, often right at a segment seam) are not swapped. Inside
one segment the 2D stage's ids come from its own tracker (motion and keypoints, through occlusions of up
to 2 s): the same id makes a match cheaper and is accepted farther from the prediction (which drifts
while a person is hidden), a different id makes it dearer; across segments ids mean nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hpe3d.v1 import common_pb2
from services.common.arrays import from_proto


#: Pose-distance bonus (subtracted) for a detection with the id the track had in the same segment, and
#: penalty (added) for a different id there, in person sizes.
SAME_ID_BONUS = 0.1
OTHER_ID_PENALTY = 0.25
#: Largest pose distance (person sizes) accepted for a detection with the id the track had in the same segment:
#: the 2D stage's tracker followed that person through an occlusion of up to 2 s, during which the prediction
#: here drifts.
SAME_ID_MAX_DISTANCE = 2.0
#: Frames of a track's recent detections its image velocity is measured over.
VELOCITY_FRAMES = 6


@dataclass
class Detection:
    frame: int
    keypoints: np.ndarray  # [17, 3] COCO-17 x, y (pixels), score
    score: float
    segment: int = 0  #: the 2D segment the frame came from (ids are only comparable within one)
    source_id: int = -1  #: the 2D stage's track id within that segment


@dataclass
class PersonTrack:
    """One person over consecutive frames; frames without a detection have all scores 0."""

    track_id: int
    first_frame: int
    keypoints: list[np.ndarray] = field(default_factory=list)  # one [17, 3] per frame
    last_seen: int = -1
    last_source: tuple[int, int] = (-1, -1)  #: (segment, 2D id) of the latest detection

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

    def velocity(self) -> np.ndarray:
        """Image velocity ``[2]`` in pixels per frame: the shift of the confident joints' mean between the
        earliest and the latest detection within the last :data:`VELOCITY_FRAMES` frames (0 if only one)."""
        last = self.last_pose()
        for f in range(max(self.first_frame, self.last_seen - VELOCITY_FRAMES), self.last_seen):
            early = self.keypoints[f - self.first_frame]
            both = (early[:, 2] >= 0.3) & (last[:, 2] >= 0.3)
            if both.sum() >= 3:
                return (last[both, :2] - early[both, :2]).mean(axis=0) / (self.last_seen - f)
        return np.zeros(2)

    def predicted_pose(self, frame: int) -> np.ndarray:
        """The last pose moved on to ``frame`` at :meth:`velocity`."""
        pose = self.last_pose().copy()
        pose[:, :2] += self.velocity() * (frame - self.last_seen)
        return pose


def detections_from_frames(frames: list[common_pb2.FramePoses2D],
                           segment_starts: list[int] | None = None) -> dict[int, list[Detection]]:
    """Detections per frame index.

    Args:
        frames: the 2D stage's frames.
        segment_starts: first frame of every 2D segment, ascending; a frame belongs to the last segment that
            starts at or before it. None: all frames form one segment (inline frames of one caller).
    """
    starts = sorted(segment_starts or [])
    out: dict[int, list[Detection]] = {}
    for frame in frames:
        segment = int(np.searchsorted(starts, frame.frame_index, side="right")) if starts else 0
        for person in frame.persons:
            kp = from_proto(person.coco17)
            if kp.shape != (17, 3):
                raise ValueError(f"frame {frame.frame_index}: coco17 has shape {kp.shape}, expected (17, 3)")
            out.setdefault(frame.frame_index, []).append(
                Detection(frame.frame_index, kp, person.score, segment, person.track_id))
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
    """Greedy frame-to-frame association of detections with where each track is predicted to be.

    Args:
        detections: detections per frame index.
        frame_count: frames in the video; frames without detections still advance time.
        max_gap: a track that has not been matched for this many frames is closed.
        max_distance: largest ``pose_distance`` (in person sizes, before the id bonus or penalty) accepted
            as the same person.
    """
    active: list[PersonTrack] = []
    closed: list[PersonTrack] = []
    next_id = 0
    empty = np.zeros((17, 3), dtype=np.float32)
    for f in range(frame_count):
        dets = sorted(detections.get(f, []), key=lambda d: -d.score)
        predicted = [t.predicted_pose(f) for t in active]
        pairs = []
        for ti, t in enumerate(active):
            for di, d in enumerate(dets):
                dist = pose_distance(predicted[ti], d.keypoints)
                same_id = t.last_source == (d.segment, d.source_id)
                if dist > (SAME_ID_MAX_DISTANCE if same_id else max_distance):
                    continue
                if t.last_source[0] == d.segment:
                    dist += -SAME_ID_BONUS if t.last_source[1] == d.source_id else OTHER_ID_PENALTY
                pairs.append((dist, ti, di))
        pairs.sort(key=lambda p: p[0])
        used_t: set[int] = set()
        used_d: set[int] = set()
        matched: dict[int, Detection] = {}
        for _, ti, di in pairs:
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            matched[ti] = dets[di]
        still: list[PersonTrack] = []
        for ti, track in enumerate(active):
            if ti in matched:
                track.keypoints.append(matched[ti].keypoints)
                track.last_seen = f
                track.last_source = (matched[ti].segment, matched[ti].source_id)
                still.append(track)
            elif f - track.last_seen <= max_gap:
                track.keypoints.append(empty)
                still.append(track)
            else:
                closed.append(track)
        for di, det in enumerate(dets):
            if di not in used_d:
                still.append(PersonTrack(next_id, f, [det.keypoints], f, (det.segment, det.source_id)))
                next_id += 1
        active = still
    closed.extend(active)
    for track in closed:  # drop the trailing frames after the last detection
        del track.keypoints[track.last_seen - track.first_frame + 1:]
    return sorted(closed, key=lambda t: t.track_id)
