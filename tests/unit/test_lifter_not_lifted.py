"""Persons the lifter does not lift (seen on too few frames, or too few pixels tall) come back in 2D
only, named as such (services/lifter3d/video_lift.py), instead of being dropped."""
import numpy as np
import pytest

from hpe3d.v1 import common_pb2
from services.common.arrays import from_proto, to_proto
from services.lifter3d.video_lift import MIN_LIFT_HEIGHT, TOO_BRIEF, TOO_SMALL, lift_frames, load_service_lifter

# COCO-17 joints of an upright person, as fractions of their height (x from the body's centre, y from the top)
UPRIGHT = np.array([[0, .06], [.03, .04], [-.03, .04], [.06, .06], [-.06, .06], [.12, .2], [-.12, .2], [.16, .35],
                    [-.16, .35], [.18, .48], [-.18, .48], [.08, .52], [-.08, .52], [.08, .75], [-.08, .75],
                    [.08, .97], [-.08, .97]])


def person(track_id: int, cx: float, top: float, height: float) -> common_pb2.Person2D:
    kp = np.ones((17, 3), np.float32)
    kp[:, 0] = cx + UPRIGHT[:, 0] * height
    kp[:, 1] = top + UPRIGHT[:, 1] * height
    return common_pb2.Person2D(track_id=track_id, score=0.9, coco17=to_proto(kp))


def test_brief_and_small_persons_are_given_in_2d_and_named():
    frames = []
    for i in range(30):
        frame = common_pb2.FramePoses2D(frame_index=i, timestamp_s=i / 30)
        frame.persons.append(person(0, 300 + i, 100, 400))                    # lifted
        if i < 3:
            frame.persons.append(person(1, 900, 150, 350))                    # seen on 3 frames
        frame.persons.append(person(2, 1100, 300, 0.5 * MIN_LIFT_HEIGHT * 720))  # a few pixels tall
        frames.append(frame)
    result = lift_frames(frames, 1280, 720, load_service_lifter())
    by_id = {t.track_id: t for t in result.tracks}
    assert len(by_id) == 3
    lifted = [t for t in result.tracks if not t.not_lifted]
    assert len(lifted) == 1 and len(lifted[0].world.values) == 30 * 17 * 3
    reasons = sorted(t.not_lifted for t in result.tracks if t.not_lifted)
    assert reasons == [TOO_BRIEF, TOO_SMALL]
    for t in result.tracks:
        if t.not_lifted:
            kp = from_proto(t.keypoints2d).reshape(t.frame_count, 17, 3)
            assert not t.world.values and not t.root_relative.values
            assert kp[:, :, 2].max() > 0
            assert t.frame_count == (3 if t.not_lifted == TOO_BRIEF else 30)


def test_nobody_to_lift_is_still_no_person_found():
    from services.common.errors import NoPersonFound

    frames = [common_pb2.FramePoses2D(frame_index=i, persons=[person(0, 300, 100, 400)]) for i in range(2)]
    with pytest.raises(NoPersonFound):
        lift_frames(frames, 1280, 720, load_service_lifter())
