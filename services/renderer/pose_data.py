"""The poses a render needs, read from the stored Poses2D segments and Poses3D, indexed by frame.

Per frame, the persons to draw and export are the 3D tracks that cover it (their ``track_id`` is
the lifter's, stable over the whole video; their 2D keypoints are the lifter's gap-filled COCO-17
input), and the persons the lifter gave in 2D only (``Track3D.not_lifted``: seen too briefly or too
small), on the frames they were detected, with no 3D and the reason. A frame no track covers falls
back to the raw 2D detections of that frame (segment-local track ids, no 3D).

3D positions of a track: ``Track3D.world`` (metres, y up, floor at y = 0, one frame shared by all tracks of
the video). A Poses3D without ``world`` (from a lifter that does not place people yet) falls back to
``grounded`` (each person's feet on y = 0 at their own pelvis-centred place); ``PoseTimeline.world_source``
says which one was used.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpe3d.v1 import common_pb2
from services.common.arrays import from_proto
from services.common.rotating_camera import rotation_from_quaternion

#: a raw 2D detection is the lifted person when their COCO-17 joints lie within this fraction of the
#: person's 2D size (bounding-box diagonal) of each other (median over joints)
SAME_PERSON_2D = 0.1


@dataclass(frozen=True)
class PersonPose:
    """One person in one frame. ``keypoints_2d`` [17, 3] COCO-17 (x px, y px, score) of the original,
    upright frame; ``root_relative`` / ``world`` [17, 3] Human3.6M-17 metres, y up; ``foot_contacts`` [2]
    (left, right; 1 = planted); ``blazepose33`` [33, 3] (x px, y px, visibility) of a raw 2D detection by
    BlazePose -- each None when absent."""

    track_id: int
    keypoints_2d: np.ndarray | None
    root_relative: np.ndarray | None = None
    world: np.ndarray | None = None
    foot_contacts: np.ndarray | None = None
    blazepose33: np.ndarray | None = None
    not_lifted: str = ""       # why a person has no 3D ("too_brief", "too_small"); "" when lifted or raw 2D


@dataclass(frozen=True)
class Unlifted:
    """A person given in 2D only: ``keypoints_2d`` [n, 17, 3] from ``first_frame`` (0 scores where unseen)."""

    track_id: int
    first_frame: int
    keypoints_2d: np.ndarray
    reason: str


@dataclass(frozen=True)
class Track:
    """One lifted person: ``frame_count`` frames from ``first_frame``."""

    track_id: int
    first_frame: int
    root_relative: np.ndarray           # [n, 17, 3] metres, pelvis at the origin, y up
    world: np.ndarray                   # [n, 17, 3] metres, y up, floor y = 0 (or grounded, see module doc)
    keypoints_2d: np.ndarray | None     # [n, 17, 3] or None
    foot_contacts: np.ndarray | None    # [n, 2] left, right (0/1) or None

    @property
    def frame_count(self) -> int:
        return int(self.world.shape[0])


def _array(message: common_pb2.FloatArray, frames: int, shape: tuple[int, ...]) -> np.ndarray | None:
    if not message.values:
        return None
    return from_proto(message).reshape((frames,) + shape)


class PoseTimeline:
    """Poses by frame index, built from stored messages."""

    def __init__(self, poses2d: list[common_pb2.Poses2D], poses3d: common_pb2.Poses3D | None):
        self.raw_2d: dict[int, list[PersonPose]] = {}
        for segment in poses2d:
            for frame in segment.frames:
                self.raw_2d[frame.frame_index] = [
                    PersonPose(p.track_id, from_proto(p.coco17).reshape(17, 3),
                               blazepose33=from_proto(p.blazepose33).reshape(33, 3)
                               if len(p.blazepose33.values) == 99 else None)
                    for p in frame.persons if len(p.coco17.values) == 51]
        self.model: str | None = (poses3d.model or None) if poses3d is not None else None  #: lifter weights
        self.camera: common_pb2.CameraEstimate | None = (
            poses3d.camera if poses3d is not None and poses3d.HasField("camera") else None)
        self.warnings: list[str] = list(poses3d.warnings) if poses3d is not None else []  #: the lifter's
        #: per frame: camera -> world rotation [F, 3, 3], focal length [F] px, quality [F] (CameraQuality);
        #: None when the lifter gave no per-frame camera
        self.camera_frames: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        if self.camera is not None and len(self.camera.rotations.values) and len(self.camera.focal_per_frame.values):
            self.camera_frames = (rotation_from_quaternion(from_proto(self.camera.rotations).reshape(-1, 4)),
                                  from_proto(self.camera.focal_per_frame).astype(np.float64),
                                  np.asarray(self.camera.quality, np.int32))
        self.tracks: list[Track] = []
        self.unlifted: list[Unlifted] = []
        sources = set()
        for t in (poses3d.tracks if poses3d is not None else []):
            if t.not_lifted:
                self.unlifted.append(Unlifted(t.track_id, t.first_frame, _array(t.keypoints2d, t.frame_count, (17, 3)),
                                              t.not_lifted))
                continue
            world = _array(t.world, -1, (17, 3))
            sources.add("world" if world is not None else "grounded")
            if world is None:
                world = _array(t.grounded, -1, (17, 3))
            if world is None:
                continue
            n = len(world)
            root = _array(t.root_relative, n, (17, 3))
            if root is None:
                root = world - world[:, :1]
            self.tracks.append(Track(t.track_id, t.first_frame, root, world, _array(t.keypoints2d, n, (17, 3)),
                                     _array(t.foot_contacts, n, (2,))))
        #: "world" when every track had Track3D.world, "grounded" when any fell back to it, None: no tracks
        self.world_source: str | None = ("grounded" if "grounded" in sources else "world") if sources else None

    def camera_at(self, frame_index: int) -> tuple[np.ndarray, float, int] | None:
        """(camera -> world rotation [3, 3], focal length px, CameraQuality) of a frame; None without them."""
        if self.camera_frames is None or not 0 <= frame_index < len(self.camera_frames[1]):
            return None
        rotations, focals, quality = self.camera_frames
        return rotations[frame_index], float(focals[frame_index]), int(quality[frame_index]) if frame_index < len(quality) else 0

    def persons(self, frame_index: int) -> list[PersonPose]:
        out = []
        for t in self.tracks:
            i = frame_index - t.first_frame
            if 0 <= i < t.frame_count:
                kp = t.keypoints_2d[i] if t.keypoints_2d is not None else self._raw_for(frame_index, t.track_id)
                contacts = t.foot_contacts[i] if t.foot_contacts is not None else None
                out.append(PersonPose(t.track_id, kp, t.root_relative[i], t.world[i], contacts))
        for u in self.unlifted:
            i = frame_index - u.first_frame
            if u.keypoints_2d is not None and 0 <= i < len(u.keypoints_2d) and u.keypoints_2d[i, :, 2].max() > 0:
                out.append(PersonPose(u.track_id, u.keypoints_2d[i], not_lifted=u.reason))
        return out or self.raw_2d.get(frame_index, [])

    def _raw_for(self, frame_index: int, track_id: int) -> np.ndarray | None:
        for p in self.raw_2d.get(frame_index, []):
            if p.track_id == track_id:
                return p.keypoints_2d
        return None

    def blazepose_for(self, frame_index: int, keypoints_2d: np.ndarray | None) -> np.ndarray | None:
        """BlazePose landmarks [33, 3] of the raw 2D detection in ``frame_index`` that is the person with
        COCO-17 ``keypoints_2d`` [17, 3] (a lifted track's gap-filled 2D): the detection whose COCO-17
        joints lie closest (median distance over joints both scored at least 0.3), if that distance is under
        :data:`SAME_PERSON_2D` of the person's 2D size; None when there is none or it has no landmarks."""
        if keypoints_2d is None:
            return None
        kp = np.asarray(keypoints_2d, np.float64)
        size = float(np.linalg.norm(np.ptp(kp[:, :2], axis=0)))
        best, best_distance = None, SAME_PERSON_2D * size
        for p in self.raw_2d.get(frame_index, []):
            if p.blazepose33 is None:
                continue
            both = (kp[:, 2] >= 0.3) & (p.keypoints_2d[:, 2] >= 0.3)
            if both.sum() < 3:
                continue
            distance = float(np.median(np.linalg.norm(kp[both, :2] - p.keypoints_2d[both, :2], axis=-1)))
            if distance < best_distance:
                best, best_distance = p.blazepose33, distance
        return best

    def pelvis_trails(self, frame_index: int, length: int) -> dict[int, np.ndarray]:
        """Per track present at ``frame_index``: its world pelvis over the last ``length`` frames up to and
        including this one ([n, 3] metres, oldest first; shorter at the track's start)."""
        out = {}
        for t in self.tracks:
            i = frame_index - t.first_frame
            if 0 <= i < t.frame_count:
                out[t.track_id] = t.world[max(0, i - length + 1):i + 1, 0]
        return out

    def world_joints(self) -> np.ndarray:
        """Every world joint of every track, [N, 3] metres (empty when there are no tracks)."""
        if not self.tracks:
            return np.zeros((0, 3), np.float32)
        return np.concatenate([t.world.reshape(-1, 3) for t in self.tracks])
