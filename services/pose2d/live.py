"""Live 2D: the frames of one stream, one at a time, with BlazePose's tracking state kept between them.

``LivePoseStream`` is what one ``Pose2D.Stream`` call holds: a ``PoseTracker`` (the people followed
from frame to frame by their landmarks, the detector run only when someone is missing), created
with the stream and dropped with it. Frames arrive as JPEGs of any size; keypoints come back in
pixels of that JPEG, with the same ``Person2D`` fields as ``Estimate`` (``segment.person_to_proto``).
"""
from __future__ import annotations

import time

import cv2
import numpy as np

from hpe3d.v1 import common_pb2, pose2d_pb2
from services.common.errors import InvalidInput
from services.pose2d.client import BlazePoseModels
from services.pose2d.estimator import EstimatorOptions, PoseTracker
from services.pose2d.segment import person_to_proto


def decode_frame(jpeg: bytes, frame_index: int) -> np.ndarray:
    """The BGR image of a live frame; ``InvalidInput`` naming the frame when it is not a JPEG."""
    if not jpeg:
        raise InvalidInput(f"live frame {frame_index} is empty")
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise InvalidInput(f"live frame {frame_index} is not a decodable JPEG ({len(jpeg)} bytes)")
    return image


class LivePoseStream:
    """The people of each frame of one stream, in order (``estimate``), tracked across frames."""

    def __init__(self, models: BlazePoseModels, max_persons: int):
        self.tracker = PoseTracker(models, EstimatorOptions(max_persons=max_persons))

    def estimate(self, frame: pose2d_pb2.Pose2DStreamFrame) -> pose2d_pb2.Pose2DStreamReply:
        started = time.perf_counter()
        image = decode_frame(frame.jpeg, frame.frame_index)
        height, width = image.shape[:2]
        people = self.tracker.update(image)
        poses = common_pb2.FramePoses2D(frame_index=frame.frame_index, timestamp_s=frame.timestamp_s,
                                        persons=[person_to_proto(p, 1.0, 1.0, width, height) for p in people])
        return pose2d_pb2.Pose2DStreamReply(poses=poses, width=width, height=height,
                                            estimate_ms=(time.perf_counter() - started) * 1000)
