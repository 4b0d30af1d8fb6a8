"""A segment's camera motion from its stored frames with the 2D's people kept out
(services/decoder/segment_camera.py): the person boxes, the mask and the checks on the segments given."""
import cv2
import numpy as np
import pytest

from hpe3d.v1 import common_pb2
from services.common.arrays import to_proto
from services.common.errors import InvalidInput
from services.decoder.segment_camera import PAD_SHARE, people_mask, person_box, track_segment_camera


def person(joints: np.ndarray, box=(0.0, 0.0, 0.0, 0.0)) -> common_pb2.Person2D:
    return common_pb2.Person2D(coco17=to_proto(np.asarray(joints, np.float32)),
                               box=common_pb2.BoundingBox(x_min=box[0], y_min=box[1], x_max=box[2], y_max=box[3]))


def test_the_box_spans_the_confident_joints_padded_by_a_share_of_its_height():
    joints = np.array([[100 + 2 * j, 50 + 10 * j, 0.9] for j in range(17)])
    joints[3] = [900, 900, 0.1]   # a joint the model is unsure of does not stretch the box
    x0, y0, x1, y1 = person_box(person(joints))
    pad = PAD_SHARE * 160
    assert (x0, y0, x1, y1) == pytest.approx((100 - pad, 50 - pad, 132 + pad, 210 + pad))


def test_too_few_confident_joints_fall_back_on_the_detectors_box_or_nothing():
    unsure = np.zeros((17, 3))
    assert person_box(person(unsure, (10, 20, 110, 220))) == pytest.approx((-20, -10, 140, 250))
    assert person_box(person(unsure)) is None


def test_mask_is_scaled_to_the_working_frame():
    joints = np.array([[400, 100 + 10 * j, 0.9] for j in range(17)] )   # a 160 px tall column at x = 400
    mask = people_mask([person(joints)], 0.5, 320, 180)
    pad = PAD_SHARE * 160
    assert mask[90, 200] and not mask[90, int((400 + pad) * 0.5) + 2] and not mask[90, int((400 - pad) * 0.5) - 2]
    assert mask.shape == (180, 320) and not people_mask([], 0.5, 320, 180).any()


def segment(start: int, count: int, size=(64, 48)) -> common_pb2.FrameSegment:
    noise = np.random.default_rng(start).integers(0, 255, (size[1], size[0]), np.uint8)
    jpeg = cv2.imencode(".jpg", noise)[1].tobytes()
    return common_pb2.FrameSegment(start_frame=start, width=size[0], height=size[1], source_width=size[0],
                                   source_height=size[1], jpeg=[jpeg] * count)


def test_segments_that_do_not_follow_each_other_are_refused():
    poses = common_pb2.Poses2D(start_frame=10, frame_count=4)
    with pytest.raises(InvalidInput, match="ends at frame 5"):
        track_segment_camera(segment(10, 4), poses, segment(0, 6), poses)
    with pytest.raises(InvalidInput, match="32x24"):
        track_segment_camera(segment(10, 4), poses, segment(0, 10, (32, 24)), poses)
    broken = segment(0, 2)
    broken.jpeg[1] = b"not a jpeg"
    with pytest.raises(InvalidInput, match="not a JPEG"):
        track_segment_camera(broken, poses)


def test_every_frame_has_a_step_and_the_first_segment_starts_its_own_chain():
    motion = track_segment_camera(segment(0, 5), common_pb2.Poses2D(start_frame=0, frame_count=5))
    assert [s.frame_index for s in motion.steps] == list(range(5)) and motion.steps[0].reference_frame == 0
    after = track_segment_camera(segment(5, 3), common_pb2.Poses2D(start_frame=5, frame_count=3), segment(0, 5),
                                 common_pb2.Poses2D(start_frame=0, frame_count=5))
    assert [s.frame_index for s in after.steps] == [5, 6, 7] and after.steps[0].reference_frame == 4
