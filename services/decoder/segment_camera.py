"""A segment's camera motion from its stored frames, with the people the 2D stage found kept out of the fit.

:func:`track_segment_camera` follows the background (:class:`~.camera_motion.BackgroundTracker`) through
the JPEG frames of one ``FrameSegment``, starting from the last frame of the segment before it (the anchor
that lets the lifter chain the segments), and masks out every person of the segment's ``Poses2D``: the box
around their confident 2D keypoints, padded by :data:`PAD_SHARE` of its height on every side (hair, hands,
feet and loose clothes reach past the joints). No corner is picked there and no point that moves into it
is used, so people walking in front of a blank wall cannot pull the fit; what remains is left to RANSAC.
"""
from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from hpe3d.v1 import common_pb2
from services.common.arrays import from_proto
from services.common.errors import InvalidInput

from .camera_motion import BackgroundTracker, camera_motion

#: Padding of a person's keypoint box on every side, as a share of the box's height.
PAD_SHARE = 0.15
#: A 2D joint counts towards the box from this score on; a person with fewer such joints than
#: :data:`MIN_JOINTS` is masked by the detector's box instead.
JOINT_SCORE = 0.3
MIN_JOINTS = 4


def person_box(person: common_pb2.Person2D) -> tuple[float, float, float, float] | None:
    """The box (x0, y0, x1, y1, pixels of the 2D) around a person's confident COCO-17 joints, padded by
    :data:`PAD_SHARE`; the detector's box when too few joints are confident; None when neither exists."""
    joints = from_proto(person.coco17).reshape(-1, 3) if person.coco17.values else np.zeros((0, 3))
    seen = joints[joints[:, 2] >= JOINT_SCORE, :2]
    if len(seen) >= MIN_JOINTS:
        (x0, y0), (x1, y1) = seen.min(axis=0), seen.max(axis=0)
    elif person.box.x_max > person.box.x_min and person.box.y_max > person.box.y_min:
        x0, y0, x1, y1 = person.box.x_min, person.box.y_min, person.box.x_max, person.box.y_max
    else:
        return None
    pad = PAD_SHARE * max(y1 - y0, x1 - x0)
    return float(x0 - pad), float(y0 - pad), float(x1 + pad), float(y1 + pad)


def people_mask(persons: Iterable[common_pb2.Person2D], scale: float, width: int, height: int) -> np.ndarray:
    """``[height, width]`` booleans, True inside any person's padded box (:func:`person_box`); ``scale``
    maps the 2D's pixels to the mask's."""
    mask = np.zeros((height, width), bool)
    for person in persons:
        box = person_box(person)
        if box is None:
            continue
        x0, y0 = (max(0, int(np.floor(v * scale))) for v in box[:2])
        x1, y1 = (max(0, int(np.ceil(v * scale))) for v in box[2:])
        mask[y0:y1, x0:x1] = True
    return mask


def _grey(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise InvalidInput("a stored frame is not a JPEG")
    return image


def _persons_by_frame(poses: common_pb2.Poses2D | None) -> dict[int, list[common_pb2.Person2D]]:
    return {f.frame_index: list(f.persons) for f in poses.frames} if poses is not None else {}


def track_segment_camera(segment: common_pb2.FrameSegment, poses: common_pb2.Poses2D,
                         previous: common_pb2.FrameSegment | None = None,
                         previous_poses: common_pb2.Poses2D | None = None) -> common_pb2.CameraMotion:
    """The ``CameraMotion`` of ``segment`` (see the module doc). ``poses``: the segment's 2D; ``previous``
    and ``previous_poses``: the segment before it (None for a video's first segment), whose last frame
    anchors this one.

    Raises:
        InvalidInput: the segments do not follow each other or differ in size, or a frame is not a JPEG.
    """
    width, height = segment.width, segment.height
    if width <= 0 or height <= 0 or not segment.jpeg:
        raise InvalidInput(f"segment at frame {segment.start_frame} has no frames or no size")
    scale = width / segment.source_width if segment.source_width > 0 else 1.0
    frames: list[tuple[int, bytes, list[common_pb2.Person2D]]] = []
    if previous is not None and previous.jpeg:
        if (previous.width, previous.height) != (width, height):
            raise InvalidInput(f"the previous segment's frames are {previous.width}x{previous.height}, "
                               f"this one's {width}x{height}")
        anchor = previous.start_frame + len(previous.jpeg) - 1
        if anchor != segment.start_frame - 1:
            raise InvalidInput(f"the previous segment ends at frame {anchor}, this one starts at "
                               f"{segment.start_frame}")
        before = _persons_by_frame(previous_poses)
        frames.append((anchor, previous.jpeg[-1], before.get(anchor, [])))
    persons = _persons_by_frame(poses)
    frames += [(segment.start_frame + i, jpeg, persons.get(segment.start_frame + i, []))
               for i, jpeg in enumerate(segment.jpeg)]
    tracker = BackgroundTracker(width, height)
    steps = [tracker.add(index, _grey(jpeg), people_mask(people, scale, width, height))
             for index, jpeg, people in frames]
    return camera_motion(steps, segment.start_frame, len(segment.jpeg), width, height)
