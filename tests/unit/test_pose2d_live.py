"""The live 2D stream (services/pose2d/live.py) on synthetic frames with stand-in models (white blobs
are people: the stand-in person detector of test_pose2d_people, BlazePose's stand-in landmark model
of test_pose2d_estimator): every person followed with a stable id, the detector in its own thread
never holding up a frame while someone is followed."""
import threading

import cv2
import numpy as np
import pytest

from hpe3d.v1 import pose2d_pb2
from services.common.arrays import from_proto
from services.common.errors import InvalidInput
from services.pose2d.live import LivePoseStream
from tests.unit.test_pose2d_estimator import BlobModels, blob_frame
from tests.unit.test_pose2d_people import BlobDetector


class GatedDetector(BlobDetector):
    """The stand-in detector, held at a gate: a call waits until the test opens it."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()

    def infer(self, images):
        self.started.set()
        assert self.gate.wait(10), "the detector's gate was never opened"
        return super().infer(images)


class Clock:
    """The stream's clock, moved by the test: one frame = 1/30 s."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def frame_message(image, index):
    jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    return pose2d_pb2.Pose2DStreamFrame(jpeg=jpeg, frame_index=index, timestamp_s=index / 30)


def centres(reply):
    return {p.track_id: float(from_proto(p.coco17)[:, 0].mean()) for p in reply.poses.persons}


def open_stream(detector, max_persons=8):
    clock = Clock()
    stream = LivePoseStream(BlobModels(), detector, max_persons, clock=clock)
    return stream, clock


def test_every_person_is_followed_with_a_stable_id():
    detector = BlobDetector()
    stream, clock = open_stream(detector)
    replies = []
    for i in range(40):
        clock.now = i / 30
        replies.append(stream.estimate(frame_message(blob_frame([(60 + i, 90, 16, 50), (250 - i, 90, 16, 50)]), i)))
    stream.close()
    assert [r.poses.frame_index for r in replies] == list(range(40))
    assert all(len(r.poses.persons) == 2 for r in replies)
    assert all(sorted(centres(r)) == [0, 1] for r in replies)
    assert all(centres(r)[0] < centres(r)[1] for r in replies)
    assert all((r.width, r.height) == (320, 180) and r.estimate_ms > 0 for r in replies)
    # the detector's cadence: the first frame, then every 0.5 s of the stream (both persons
    # followed but room for more), not every frame
    assert stream.detector_runs == 3


def test_a_slow_detector_does_not_hold_up_frames_and_its_newcomer_joins_when_ready():
    detector = GatedDetector()
    stream, clock = open_stream(detector)
    first = stream.estimate(frame_message(blob_frame([(60, 90, 16, 50)]), 0))
    assert len(first.poses.persons) == 1            # nobody followed yet: the first frame waits for the boxes
    assert stream.frames_waited == 1
    detector.gate.clear()
    detector.started.clear()
    replies = []
    for i in range(1, 30):
        clock.now = i / 30
        replies.append(stream.estimate(frame_message(blob_frame([(60 + i, 90, 16, 50), (250, 90, 16, 50)]), i)))
    # the detector started at 0.5 s (frame 15) and is still held: the frames went on with the one person
    assert detector.started.wait(5)
    assert all(len(r.poses.persons) == 1 and centres(r).keys() == {0} for r in replies)
    assert stream.frames_waited == 1
    detector.gate.set()
    stream._pending.result(timeout=10)                # the detector's answer is ready ...
    clock.now = 30 / 30
    joined = stream.estimate(frame_message(blob_frame([(90, 90, 16, 50), (250, 90, 16, 50)]), 30))
    assert sorted(centres(joined)) == [0, 1]          # ... and joins the next frame
    assert centres(joined)[0] < 200 < centres(joined)[1]
    stream.close()


def test_with_max_persons_followed_the_detector_rests():
    detector = BlobDetector()
    stream, clock = open_stream(detector, max_persons=1)
    for i in range(60):
        clock.now = i / 30
        reply = stream.estimate(frame_message(blob_frame([(60 + i, 90, 16, 50), (250, 90, 16, 50)]), i))
        assert len(reply.poses.persons) == 1 and reply.poses.persons[0].track_id == 0
    stream.close()
    assert stream.detector_runs == 1


def test_a_lost_person_is_looked_for_on_the_next_frame_and_keeps_their_id():
    detector = BlobDetector()
    stream, clock = open_stream(detector)
    ids = []
    for i in range(40):
        clock.now = i / 30
        blobs = [(250, 90, 16, 50)] + ([] if 10 <= i < 14 else [(40 + 2 * i, 90, 16, 50)])
        if i >= 17 and stream._pending is not None:  # a camera's 33 ms between frames: the thread is done
            stream._pending.result(timeout=10)
        reply = stream.estimate(frame_message(blob_frame(blobs), i))
        ids.append(centres(reply))
    stream.close()
    # back by the scheduled run on frame 15, whose boxes join a frame or two later (the thread is done by frame 17)
    assert all(len(c) == 2 for c in ids[:10]) and all(len(c) == 2 for c in ids[20:])
    walker = {min(c, key=c.get) for c in ids if len(c) == 2}
    assert len(walker) == 1                           # the walker's id before and after the gap
    assert len({t for c in ids for t in c}) == 2
    # runs beyond the schedule (frames 0, 15, 30): on the frames after the walker was lost
    assert stream.detector_runs > 3


def test_nobody_in_view_gives_empty_frames():
    stream, _ = open_stream(BlobDetector())
    reply = stream.estimate(frame_message(np.zeros((180, 320, 3), np.uint8), 0))
    stream.close()
    assert not reply.poses.persons and (reply.width, reply.height) == (320, 180)


def test_a_frame_that_is_not_a_jpeg_is_refused_by_its_index():
    stream, _ = open_stream(BlobDetector())
    with pytest.raises(InvalidInput, match="frame 7"):
        stream.estimate(pose2d_pb2.Pose2DStreamFrame(jpeg=b"not a jpeg", frame_index=7))
    stream.close()


def test_a_new_person_the_model_rejects_gets_no_second_call_with_an_empty_batch():
    """A detector box where the landmark model sees nobody: the aligned second pass has no one to
    refine and must not call the model with zero crops (Triton's client cannot join zero replies)."""
    from services.pose2d.blazepose import Roi
    from services.pose2d.keypoint_followers import BlazePoseFollower
    from tests.unit.test_pose2d_estimator import BlobModels

    models = BlobModels()
    follower = BlazePoseFollower(models)
    found = follower.find(blob_frame([]), [Roi(160, 90, 120, 0.0)], new=True)
    assert len(found) == 1 and not found[0].present
    assert models.landmark_batches == [1]
