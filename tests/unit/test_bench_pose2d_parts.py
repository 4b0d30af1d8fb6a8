"""bench/pose2d_parts.py: the parts of the 2D stage's code are timed and counted, and the code is left
as it was (stand-in models of test_pose2d_people)."""
from concurrent.futures import Future

from bench.pose2d_parts import PARTS, print_parts, timed_parts
from services.pose2d.people import PeopleOptions, estimate_segment_people
from services.pose2d.keypoint_followers import BlazePoseFollower
from tests.unit.test_pose2d_estimator import BlobModels, blob_frame
from tests.unit.test_pose2d_people import BlobDetector, segment_of


def test_parts_are_timed_and_the_code_restored(capsys):
    before = [getattr(owner, name) for owner, name, _ in PARTS] + [Future.result]
    segment = segment_of([blob_frame([(60 + f, 90, 16, 50), (220, 90, 16, 50)]) for f in range(20)])
    models, detector = BlobModels(), BlobDetector()
    print_parts(segment, detector, models, PeopleOptions(), heatmap=False)
    out = capsys.readouterr().out
    assert "parts of 20 frames" in out and "2.00 persons per frame" in out
    lines = {line[13:58].strip(): line for line in out.splitlines()[1:]}
    assert "(20 calls)" in lines["frame loop (PeopleFollower.update)"]
    assert "(20 calls)" in lines["JPEG decode"]
    assert "(2 calls)" in lines["detector model calls"]          # frames 0 and 15
    assert "landmark model calls" in lines and "tracker" in lines
    assert [getattr(owner, name) for owner, name, _ in PARTS] + [Future.result] == before
    assert "landmarks" not in vars(models) and "infer" not in vars(detector)
    # what the stage computes does not change while timed
    plain = estimate_segment_people(segment, BlobDetector(), BlazePoseFollower(BlobModels(), False))
    with timed_parts() as (seconds, calls, _):
        timed = estimate_segment_people(segment, BlobDetector(), BlazePoseFollower(BlobModels(), False))
    assert timed == plain and calls[("MainThread", "tracker")] == 20
