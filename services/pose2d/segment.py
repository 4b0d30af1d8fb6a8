"""One frame segment in, its 2D poses out by the former BlazePose-detector path:
``estimate_segment(FrameSegment) -> Poses2D`` (``bench/eval_2d.py`` measures it beside the stage's
``people.estimate_segment_people``); and what both share: JPEG decoding, the segment's start, boxes.

The segment's JPEGs (working resolution) are decoded one frame ahead in a background thread while
the models run, the people are tracked through the segment (``estimator.PoseTracker``), and their
keypoints are scaled to the original video's pixels (``source_width / width``).

Per person and frame (``Person2D``): ``blazepose33`` [33, 3] and ``coco17`` [17, 3] (the COCO
subset, ``skeletons.blazepose33_to_coco17``) hold x, y in original-frame pixels and a score =
sigmoid(visibility) x sigmoid(presence) of the landmark model; ``box`` is the box around the 33
landmarks, clipped to the frame; ``score`` is the landmark model's pose flag.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from hpe3d.v1 import common_pb2
from services.common.arrays import to_proto
from services.common.cancellation import NEVER, CancelToken
from services.common.errors import InvalidInput
from services.common.skeletons import blazepose33_to_coco17
from services.pose2d.client import BlazePoseModels
from services.pose2d.estimator import EstimatorOptions, PoseTracker, TrackedPose

PREFETCH = 3


def _decode(jpeg: bytes, index: int, reduce: int) -> np.ndarray:
    flag = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4}[reduce]
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), flag)
    if image is None:
        raise InvalidInput(f"frame {index} of the segment is not a decodable JPEG")
    return image


def decode_jpegs(jpegs: Sequence[bytes], reduce: int = 1) -> Iterator[np.ndarray]:
    """BGR frames of ``jpegs`` in order, decoded up to ``PREFETCH`` frames ahead in a thread
    (OpenCV releases the GIL). ``reduce`` 2 or 4 decodes at 1/2 or 1/4 size (cheaply, in the DCT)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="jpeg") as pool:
        pending: deque = deque()
        for i, jpeg in enumerate(jpegs):
            pending.append(pool.submit(_decode, jpeg, i, reduce))
            if len(pending) > PREFETCH:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class DecodedFrames(Sequence):
    """A segment's JPEGs as a sequence of BGR frames, decoded in order in a background thread from
    the moment it is made (OpenCV releases the GIL), so decoding overlaps the model work; indexing
    waits for that frame. Use as a context manager: leaving it stops the decoding still to do."""

    def __init__(self, jpegs: Sequence[bytes], reduce: int = 1):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jpeg")
        self._frames = [self._pool.submit(_decode, jpeg, i, reduce) for i, jpeg in enumerate(jpegs)]

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [f.result() for f in self._frames[index]]
        return self._frames[index].result()

    def __enter__(self) -> "DecodedFrames":
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def decode_reduction(width: int, height: int, max_side: int = 1280) -> int:
    """1, 2 or 4: decode JPEGs whose long side reaches ``max_side`` at a fraction of their size.
    BlazePose sees every person through a 256x256 crop, so 640-1280 pixels are plenty."""
    long_side = max(width, height)
    return 4 if long_side >= 4 * max_side else 2 if long_side >= max_side else 1


def box_to_proto(box: tuple[float, float, float, float], sx: float, sy: float, width: float,
                 height: float) -> common_pb2.BoundingBox:
    """A working-frame box ``(x0, y0, x1, y1)`` scaled by ``sx``, ``sy`` to original-frame pixels and
    clipped to the original frame ``width`` x ``height``."""
    x0, y0, x1, y1 = box
    return common_pb2.BoundingBox(x_min=float(np.clip(x0 * sx, 0, width)), y_min=float(np.clip(y0 * sy, 0, height)),
                                  x_max=float(np.clip(x1 * sx, 0, width)), y_max=float(np.clip(y1 * sy, 0, height)))


def start_poses(segment: common_pb2.FrameSegment) -> tuple[common_pb2.Poses2D, int, int]:
    """The segment's result before any frame is added, and the original frame's width and height.

    Raises:
        InvalidInput: a segment with frames but no working size.
    """
    if segment.jpeg and (segment.width <= 0 or segment.height <= 0):
        raise InvalidInput(f"segment has no working size ({segment.width}x{segment.height})")
    result = common_pb2.Poses2D(start_frame=segment.start_frame, frame_count=len(segment.jpeg))
    return result, segment.source_width or segment.width, segment.source_height or segment.height


def person_to_proto(person: TrackedPose, sx: float, sy: float, width: float, height: float) -> common_pb2.Person2D:
    """A tracked pose in working-frame pixels -> ``Person2D`` in original-frame pixels
    (``sx``, ``sy``: original / working; ``width``, ``height``: the original frame size)."""
    kp = person.landmarks.keypoints()
    kp[:, 0] *= sx
    kp[:, 1] *= sy
    box = box_to_proto(person.landmarks.body_box(), sx, sy, width, height)
    return common_pb2.Person2D(track_id=person.track_id, box=box, score=person.landmarks.pose_flag,
                               coco17=to_proto(blazepose33_to_coco17(kp)), blazepose33=to_proto(kp))


def estimate_segment(segment: common_pb2.FrameSegment, models: BlazePoseModels,
                     options: EstimatorOptions | None = None, cancel: CancelToken = NEVER) -> common_pb2.Poses2D:
    """The 2D poses of every frame of ``segment`` (frame indices are the video's); ``CallCancelled``
    (checked before each frame) once ``cancel`` is."""
    result, source_w, source_h = start_poses(segment)
    if not segment.jpeg:
        return result
    reduce = decode_reduction(segment.width, segment.height)
    tracker = PoseTracker(models, options)
    for i, frame in enumerate(cancel.each(decode_jpegs(segment.jpeg, reduce))):
        people = tracker.update(frame)
        sx, sy = source_w / frame.shape[1], source_h / frame.shape[0]
        timestamp = segment.timestamps_s[i] if i < len(segment.timestamps_s) else 0.0
        result.frames.append(common_pb2.FramePoses2D(
            frame_index=segment.start_frame + i, timestamp_s=timestamp,
            persons=[person_to_proto(p, sx, sy, source_w, source_h) for p in people]))
    return result


def frames_with_person(poses: common_pb2.Poses2D) -> int:
    return sum(1 for f in poses.frames if f.persons)
