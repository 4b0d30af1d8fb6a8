"""Live 2D: the frames of one stream, one at a time, every person followed and tracked between them.

``LivePoseStream`` is what one ``Pose2D.Stream`` call holds: the batch path's people loop
(``people.PeopleFollower``: the person detector's boxes, BlazePose's landmark model on each person
followed frame to frame, ids from ``person_tracking``), created with the stream and dropped with it.
What differs from a segment is time: a live frame must not wait for the detector.

* The detector runs in a thread of its own, on the frame at hand, about every ``detect_every_s``
  (0.5 s of the stream's clock) while fewer than ``max_persons`` are followed, and at once on the
  frame after a followed person was lost. Its boxes join the first frame after they are ready (a
  frame or two later than the one they were found on; ``PeopleFollower`` turns them into aligned
  landmark ROIs on that frame), so a frame costs the landmark model's time, not the detector's.
* Only while nobody is followed does a frame wait for the detector: it has no landmark work to
  overlap, and without the boxes it would come back empty.

Frames arrive as JPEGs of any size; keypoints come back in pixels of that JPEG, with the same
``Person2D`` fields as ``Estimate`` (``people.person_to_proto``).
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import cv2
import numpy as np

from hpe3d.v1 import common_pb2, pose2d_pb2
from services.common.errors import InvalidInput
from services.pose2d.client import BlazePoseModels
from services.pose2d.keypoint_followers import BlazePoseFollower
from services.pose2d.people import PeopleFollower, PeopleOptions, person_to_proto
from services.pose2d.person_detector import PersonDetection, PersonDetectorModel, detect_persons

LIVE_FPS = 30.0     # the tracker's frame rate for its motion model and hidden-time limit (cameras: 15-30)


def decode_frame(jpeg: bytes, frame_index: int) -> np.ndarray:
    """The BGR image of a live frame; ``InvalidInput`` naming the frame when it is not a JPEG."""
    if not jpeg:
        raise InvalidInput(f"live frame {frame_index} is empty")
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise InvalidInput(f"live frame {frame_index} is not a decodable JPEG ({len(jpeg)} bytes)")
    return image


class LivePoseStream:
    """The people of each frame of one stream, in order (``estimate``), tracked across frames;
    ``close`` when the stream ends (its detector thread goes with it)."""

    def __init__(self, models: BlazePoseModels, detector: PersonDetectorModel, max_persons: int,
                 options: PeopleOptions | None = None, clock: Callable[[], float] = time.monotonic):
        self.options = dataclasses.replace(options or PeopleOptions(), max_persons=max_persons)
        self.detector = detector
        self.people = PeopleFollower(BlazePoseFollower(models), self.options, LIVE_FPS)
        self.clock = clock
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-detector")
        self._pending: Future | None = None
        self._last_start = -math.inf
        self.detector_runs = 0
        self.frames_waited = 0      # frames that took the detector's answer to their own frame (nobody followed)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _start_if_due(self, image: np.ndarray, now: float) -> None:
        """Starts the detector on ``image`` when nobody is followed, a followed person was lost on the
        last frame, or ``detect_every_s`` has passed since its last scheduled run (a run for a lost
        person does not move the schedule); never with ``max_persons`` followed."""
        if self._pending is not None or self.people.following >= self.options.max_persons:
            return
        scheduled = self.people.following == 0 or now - self._last_start >= self.options.detect_every_s
        if not (scheduled or self.people.lost):
            return
        if scheduled:
            self._last_start = now
        self.detector_runs += 1
        self._pending = self._pool.submit(detect_persons, [image], self.detector,
                                          self.options.min_rediscovery_score, False)

    def _joined(self) -> list[PersonDetection] | None:
        """The detector's boxes if they are ready, or if nobody is followed (then waited for)."""
        if self._pending is None or not (self._pending.done() or self.people.following == 0):
            return None
        if self.people.following == 0:
            self.frames_waited += 1
        future, self._pending = self._pending, None
        return future.result()[0]

    def estimate(self, frame: pose2d_pb2.Pose2DStreamFrame) -> pose2d_pb2.Pose2DStreamReply:
        started = time.perf_counter()
        image = decode_frame(frame.jpeg, frame.frame_index)
        height, width = image.shape[:2]
        self._start_if_due(image, self.clock())
        people = self.people.update(image, self._joined())
        poses = common_pb2.FramePoses2D(frame_index=frame.frame_index, timestamp_s=frame.timestamp_s,
                                        persons=[person_to_proto(p, 1.0, 1.0, width, height) for p in people])
        return pose2d_pb2.Pose2DStreamReply(poses=poses, width=width, height=height,
                                            estimate_ms=(time.perf_counter() - started) * 1000)
