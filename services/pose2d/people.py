"""Every person of a frame segment: ``estimate_segment_people(FrameSegment) -> Poses2D``.

1. **Detector** (``person_detector``, NanoDet): runs every ``detect_every_s`` of video (0.5 s: 15
   frames at 30 frames/s, so a newcomer is picked up within half a second) while fewer than
   ``max_persons`` are followed, in a thread beside the keypoint model (``track_people``), never
   holding up a frame but the first; also on the frame after one where a followed person was lost,
   which restarts the period. A detection starts a person at ``min_detection_score``; a weaker
   one (down to ``min_rediscovery_score``) only finds again a person lost from view where they were
   last seen, as ByteTrack uses its low-score boxes. A still image (a one-frame segment) is also searched in square
   tiles (``person_detector.windows``), where people a tenth of the frame tall are three times bigger.
2. **Keypoints** (``keypoint_followers``): each detected person not already followed gets a region
   from their box and the keypoint model (BlazePose landmarks, or a top-down model on the same
   boxes); between detections each person's region comes from their keypoints on the previous frame,
   as BlazePose follows a person; all persons of a frame go to the model in one batched call. On a
   still image two detections (best score first) are tried per person that could be added, so a false
   detection the keypoint model rejects does not take a real person's place. A
   person whose box overlaps someone else's is shown to the model inside their box only. A person whose keypoint model says nobody is there any more is no longer followed.
3. **Ids** (``person_tracking.PersonTracker``): every frame's persons are associated with the tracks
   by motion and keypoints, so ids survive occlusions of up to 2 s and crossings; ids count from 0
   in order of first appearance within the segment (the lifter links segments).

Per person and frame (``Person2D``): ``coco17`` [17, 3] (and with BlazePose ``blazepose33`` [33, 3])
x, y in original-frame pixels and a score; ``box`` around the body, original pixels, clipped to the
frame; ``score`` the keypoint model's confidence that a person is there. At most ``max_persons`` per
frame: the persons followed first, then new ones by detector score.
"""
from __future__ import annotations

import statistics
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hpe3d.v1 import common_pb2
from services.common.cancellation import NEVER, CancelToken
from services.common.arrays import to_proto
from services.pose2d.blazepose import box_iou
from services.pose2d.keypoint_followers import FoundPerson, KeypointFollower
from services.pose2d.person_detector import MIN_SCORE, PersonDetection, PersonDetectorModel, detect_persons
from services.pose2d.person_tracking import Observation, PersonTracker, TrackerOptions, keypoint_similarity
from services.pose2d.segment import DecodedFrames, box_to_proto, decode_reduction, start_poses

DEFAULT_FPS = 30.0
SAME_KEYPOINTS = 0.7   # two sets of keypoints this similar (person_tracking.keypoint_similarity) are one person
LOST_DISTANCE = 0.5    # a weak detection whose centre lies this many heights from a lost person's last box ...
LOST_HEIGHT_RATIO = 1.5   # ... and whose height is within this factor of it, is that person
DETECTOR_LEAD = 4         # frames ahead of its frame that a scheduled detector run is started


def near(box, last) -> bool:
    """Whether ``box`` could be the person last seen in ``last`` (both x0, y0, x1, y1)."""
    h, last_h = max(box[3] - box[1], 1.0), max(last[3] - last[1], 1.0)
    distance = np.hypot((box[0] + box[2] - last[0] - last[2]) / 2, (box[1] + box[3] - last[1] - last[3]) / 2)
    return distance <= LOST_DISTANCE * last_h and 1 / LOST_HEIGHT_RATIO <= h / last_h <= LOST_HEIGHT_RATIO


@dataclass(frozen=True)
class PeopleOptions:
    max_persons: int = 8
    detect_every_s: float = 0.5        # detector period: a newcomer is found within this time
    tiles: bool | None = None          # detector also on square tiles; None: on a still image only
    min_detection_score: float = MIN_SCORE
    min_rediscovery_score: float = 0.2  # a weaker detection counts where a person was lost (ByteTrack's idea)
    same_person_iou: float = 0.6       # a detection (or a second region) overlapping a followed person this much is them
    max_hidden_s: float = 2.0          # a person hidden this long keeps their id (person_tracking)
    candidates_per_place: int = 1      # detections (best first) the keypoint model tries per person that could be
    candidates_per_place_still: int = 2   # added, in video / on a still image (a false box does not take a real one's place)


@dataclass(frozen=True)
class FramePerson:
    """One person in one frame: their track id and keypoints (working-frame pixels)."""

    track_id: int
    found: FoundPerson


def segment_fps(timestamps: list[float]) -> float:
    """Frames per second from a segment's timestamps (median step); 30 when it cannot tell."""
    steps = [b - a for a, b in zip(timestamps, timestamps[1:]) if b > a]
    return 1.0 / statistics.median(steps) if steps else DEFAULT_FPS


def detection_step(fps: float, every_s: float) -> int:
    """Frames from one scheduled detector run to the next: ``every_s`` seconds of video."""
    return max(1, int(every_s * fps + 1e-6))


class PeopleFollower:
    """Runs steps 1-3 of the module docstring over consecutive frames (``update``)."""

    def __init__(self, keypoints: KeypointFollower, options: PeopleOptions, fps: float = DEFAULT_FPS,
                 still: bool = False):
        self.keypoints = keypoints
        self.options = options
        self.still = still                         # a still image: more model calls per new person
        self.lost = False                          # whether a followed person was lost on the last frame
        self.tracker = PersonTracker(TrackerOptions(fps=fps, max_hidden_s=options.max_hidden_s))
        self._regions: dict[int, object] = {}      # track id -> region on the next frame
        self._boxes: dict[int, tuple[float, float, float, float]] = {}   # track id -> box on the last frame

    def _credible(self, detections: list[PersonDetection], followed: set[int]) -> list[PersonDetection]:
        """The detections scoring ``min_detection_score``, and the weaker ones that overlap the last box
        of a person lost from view (not followed now, still tracked)."""
        lost = [box for t, box in self.tracker.last_boxes().items() if t not in followed]
        return [d for d in detections if d.score >= self.options.min_detection_score
                or any(near(d.box, b) for b in lost)]

    def update(self, frame: np.ndarray, detections: list[PersonDetection] | None) -> list[FramePerson]:
        """The persons of the next frame; ``detections`` the detector's for it (None: it did not run
        there). The caller runs the detector, on the next frame when ``lost`` says so."""
        opts = self.options
        followed: list[tuple[FoundPerson, int]] = []
        if self._regions:
            ids = list(self._regions)
            found = self.keypoints.find(frame, [self._regions[t] for t in ids], boxes=self._crowded_boxes(ids))
            followed = [(f, t) for f, t in zip(found, ids) if f.present]
        people = self._without_duplicates(followed)
        self.lost = len(people) < len(self._regions)
        if detections:
            detections = self._credible(detections, {t for _, t in people})
            room = max(opts.max_persons - len(people), 0)
            boxes = [d.box for d in detections
                     if not any(box_iou(d.box, f.box) > opts.same_person_iou for f, _ in people)]
            boxes = boxes[:room * (opts.candidates_per_place_still if self.still else opts.candidates_per_place)]
            others = [d.box for d in detections] + [f.box for f, _ in people]
            crowded = [b if sum(box_iou(b, o) > 0 for o in others) > 1 else None for b in boxes]  # itself + another
            found = self.keypoints.find(frame, [self.keypoints.region_from_box(b, self.still) for b in boxes],
                                        new=True, boxes=crowded, still=self.still)
            people = self._without_duplicates(people + [(f, -1) for f in found if f.present])
        people = people[:opts.max_persons]
        ids = self.tracker.update([Observation(f.box, f.coco17, f.score, follows) for f, follows in people])
        self._regions = {t: f.next_region for t, (f, _) in zip(ids, people)}
        self._boxes = {t: f.box for t, (f, _) in zip(ids, people)}
        return sorted((FramePerson(t, f) for t, (f, _) in zip(ids, people)), key=lambda p: p.track_id)

    @property
    def following(self) -> int:
        """How many persons are followed into the next frame."""
        return len(self._regions)

    def _crowded_boxes(self, ids: list[int]) -> list[tuple[float, float, float, float] | None]:
        """Per followed person, their last box when it overlaps someone else's (the keypoint model
        then sees only it), else None."""
        return [self._boxes[t] if any(u != t and box_iou(self._boxes[t], self._boxes[u]) > 0 for u in ids) else None
                for t in ids]

    def _without_duplicates(self, people: list[tuple[FoundPerson, int]]) -> list[tuple[FoundPerson, int]]:
        """Two regions that converged on one person (boxes or keypoints in the same place): the one
        followed longer (then the surer) stays."""
        order = sorted(people, key=lambda p: (p[1] < 0, p[1], -p[0].score))
        kept: list[tuple[FoundPerson, int]] = []
        for f, t in order:
            if not any(self._same_person(f, k) for k, _ in kept):
                kept.append((f, t))
        return kept

    def _same_person(self, a: FoundPerson, b: FoundPerson) -> bool:
        """Boxes overlapping more than ``same_person_iou``, or keypoints on the same places."""
        if box_iou(a.box, b.box) > self.options.same_person_iou:
            return True
        height = max(a.box[3] - a.box[1], b.box[3] - b.box[1], 1.0)
        similarity = keypoint_similarity(a.coco17, b.coco17, 0.5 * height)   # COCO's scale: about half the height
        return similarity is not None and similarity > SAME_KEYPOINTS


def track_people(frames: Sequence[np.ndarray], detector: PersonDetectorModel, keypoints: KeypointFollower,
                 options: PeopleOptions | None = None, fps: float = DEFAULT_FPS,
                 cancel: CancelToken = NEVER) -> list[list[FramePerson]]:
    """The persons of every frame (BGR uint8, consecutive), with track ids; ``CallCancelled`` (checked
    before each frame) once ``cancel`` is.

    The detector never holds up a frame but the first: it runs in a thread beside the keypoint model.
    It runs on frame 0, then ``detect_every_s`` after its last run (started ``DETECTOR_LEAD`` frames
    ahead, so that its answer is ready when the frame comes), and on the frame after one where a
    followed person was lost (started at once, while that next frame's landmarks are found; a person
    lost on a frame where the detector ran is not looked for again). A run after a loss also restarts
    the period, so no frame goes longer than ``detect_every_s`` without one: a newcomer is found
    within that time. It does not run while ``max_persons`` persons are followed (nobody new could
    be added)."""
    options = options or PeopleOptions()
    tiles = options.tiles if options.tiles is not None else len(frames) == 1
    follower = PeopleFollower(keypoints, options, fps, still=len(frames) == 1)
    step = detection_step(fps, options.detect_every_s)
    out = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="detector") as pool:
        def start(i: int) -> None:
            pending[i] = pool.submit(detect_persons, [frames[i]], detector, options.min_rediscovery_score, tiles)

        pending: dict[int, Future] = {}
        last_run = 0
        if len(frames):
            start(0)
        for i, frame in enumerate(cancel.each(frames)):
            future = pending.pop(i, None)
            people = follower.update(frame, future.result()[0] if future is not None else None)
            out.append(people)
            if len(people) >= options.max_persons:
                continue
            if follower.lost and future is None and i + 1 < len(frames) and i + 1 not in pending:
                start(i + 1)                    # someone was lost: look on the next frame
                last_run = i + 1
            upcoming = last_run + step
            if i + DETECTOR_LEAD >= upcoming and upcoming < len(frames) and upcoming not in pending:
                start(upcoming)
                last_run = upcoming
    return out


def person_to_proto(person: FramePerson, sx: float, sy: float, width: float, height: float) -> common_pb2.Person2D:
    """A person in working-frame pixels -> ``Person2D`` in original-frame pixels."""
    found = person.found
    coco = found.coco17.copy()
    coco[:, 0] *= sx
    coco[:, 1] *= sy
    out = common_pb2.Person2D(track_id=person.track_id, box=box_to_proto(found.box, sx, sy, width, height),
                              score=float(np.clip(found.score, 0.0, 1.0)), coco17=to_proto(coco))
    if found.blazepose33 is not None:
        blaze = found.blazepose33.copy()
        blaze[:, 0] *= sx
        blaze[:, 1] *= sy
        out.blazepose33.CopyFrom(to_proto(blaze))
    return out


def estimate_segment_people(segment: common_pb2.FrameSegment, detector: PersonDetectorModel,
                            keypoints: KeypointFollower, options: PeopleOptions | None = None,
                            cancel: CancelToken = NEVER) -> common_pb2.Poses2D:
    """The 2D poses of every person in every frame of ``segment`` (frame indices are the video's)."""
    result, source_w, source_h = start_poses(segment)
    if not segment.jpeg:
        return result
    with DecodedFrames(segment.jpeg, decode_reduction(segment.width, segment.height)) as frames:
        people = track_people(frames, detector, keypoints, options, segment_fps(list(segment.timestamps_s)), cancel)
        height, width = frames[0].shape[:2]
    sx, sy = source_w / width, source_h / height
    for i, persons in enumerate(people):
        timestamp = segment.timestamps_s[i] if i < len(segment.timestamps_s) else 0.0
        result.frames.append(common_pb2.FramePoses2D(
            frame_index=segment.start_frame + i, timestamp_s=timestamp,
            persons=[person_to_proto(p, sx, sy, source_w, source_h) for p in persons]))
    return result
