"""Every person of a segment (services/pose2d/people.py) on synthetic frames with stand-in models
(white blobs are people: a stand-in person detector that boxes every blob, BlazePose's stand-in
landmark model of test_pose2d_estimator), plus the real models in-process on the office clip when
`make models` and `make detector` ran."""
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from hpe3d.v1 import common_pb2
from services.common.arrays import from_proto
from services.pose2d.keypoint_followers import BlazePoseFollower
from services.pose2d.people import (PeopleOptions, detection_step, estimate_segment_people, segment_fps,
                                    track_people)
from services.pose2d.person_detector import DetectorInfo
from services.triton.repositories import REPOSITORY_DIR, missing_model_files
from tests.unit.test_pose2d_estimator import BlobModels, blob_frame
from tests.unit.test_pose2d_person_detector import config_json

DATA = Path(__file__).resolve().parent.parent / "data"


class BlobDetector:
    """Stand-in person detector: every white blob of the (letterboxed) input is a person, its box
    encoded as NanoDet's head would (score in the stride-32 cell of its centre, distances as a
    two-bin distribution whose expectation is exact)."""

    def __init__(self):
        self.info = DetectorInfo.from_config(config_json())
        self.frames = 0

    def infer(self, images):
        info = self.info
        self.frames += len(images)
        scores = np.zeros((len(images), info.cells), np.float32)
        bins = np.full((len(images), info.cells, 4, info.bins), -30.0, np.float32)
        level = info.levels[-1]
        offset = info.cells - level.rows * level.cols
        for n, image in enumerate(images):
            count, _, stats, _ = cv2.connectedComponentsWithStats((image[..., 0] > 127).astype(np.uint8))
            for k in range(1, count):
                x, y, w, h, _ = stats[k]
                row, col = min(int((y + h / 2) // level.stride), level.rows - 1), min(int((x + w / 2) // level.stride), level.cols - 1)
                cell = offset + row * level.cols + col
                cx, cy = (col + 0.5) * level.stride, (row + 0.5) * level.stride
                scores[n, cell] = 0.9
                for side, d in enumerate((cx - x, cy - y, x + w - cx, y + h - cy)):
                    v = float(np.clip(d / level.stride, 0, info.bins - 1 - 1e-6))
                    lo = int(v)
                    bins[n, cell, side, lo] = np.log(max(1 - (v - lo), 1e-9))
                    bins[n, cell, side, lo + 1] = np.log(max(v - lo, 1e-9))
        return scores, bins.reshape(len(images), info.cells, 4 * info.bins)


def run(frames, fps=30.0, **options):
    detector, models = BlobDetector(), BlobModels()
    out = track_people(frames, detector, BlazePoseFollower(models, refine_with_heatmap=False),
                       PeopleOptions(**options), fps)
    return out, detector, models


def centres(frame_people):
    return {p.track_id: ((p.found.box[0] + p.found.box[2]) / 2) for p in frame_people}


def test_detector_every_half_second():
    assert detection_step(30.0, 0.5) == 15
    assert detection_step(25.0, 0.5) == 12
    assert detection_step(2.0, 0.5) == 1
    assert segment_fps([i / 25 for i in range(10)]) == pytest.approx(25)
    assert segment_fps([0.0]) == 30.0


def test_a_newcomer_is_picked_up_within_half_a_second_and_both_keep_their_ids():
    frames = [blob_frame([(60 + f, 90, 16, 50)] + ([(250, 90, 16, 50)] if f >= 17 else [])) for f in range(60)]
    out, detector, models = run(frames)
    assert [len(p) for p in out[:17]] == [1] * 17
    first_seen = next(f for f, people in enumerate(out) if len(people) == 2)
    assert 17 <= first_seen <= 17 + 15
    assert all(len(p) == 2 for p in out[first_seen:])
    assert all(sorted(centres(p)) == [0, 1] for p in out[first_seen:])
    assert all(centres(p)[0] < 200 < centres(p)[1] for p in out[first_seen:])
    # the detector ran on its schedule only (every 15th frame), not on every frame
    assert detector.frames == len(range(0, 60, detection_step(30.0, 0.5)))


def test_a_person_hidden_for_a_second_keeps_their_id():
    """Walks right 2 px/frame, hidden (gone from the frame) for 30 frames, back on their course."""
    frames = []
    for f in range(90):
        blobs = [(250, 90, 16, 50)]
        if not 32 <= f < 62:
            blobs.append((40 + 2 * f, 90, 16, 50))
        frames.append(blob_frame(blobs))
    out, detector, _ = run(frames)
    walker = [min(centres(p), key=lambda t: centres(p)[t]) for p in out if len(p) == 2]
    assert set(walker) == {1} or set(walker) == {0}
    assert len({p.track_id for people in out for p in people}) == 2
    # lost on frame 32: the detector looked again on the next frame
    assert detector.frames > len(range(0, 90, detection_step(30.0, 0.5)))


def test_after_a_loss_the_detector_runs_on_the_next_frame_and_its_period_restarts(monkeypatch):
    """The walker of the test above is lost on frame 32: the detector runs on frame 33 (in its thread,
    not holding up frame 32), then every 15 frames from there, so no 15 frames pass without a run."""
    import services.pose2d.people as people
    frames = [blob_frame([(250, 90, 16, 50)] + ([] if 32 <= f < 62 else [(40 + 2 * f, 90, 16, 50)])) for f in range(90)]
    ran, detect = [], people.detect_persons

    def recorded(images, *args):
        ran.append(next(i for i, f in enumerate(frames) if f is images[0]))
        return detect(images, *args)
    monkeypatch.setattr(people, "detect_persons", recorded)
    out, _, _ = run(frames)
    assert ran == [0, 15, 30, 33, 48, 63, 78]
    assert [len(p) for p in out[:32]] == [2] * 32 and [len(p) for p in out[32:63]] == [1] * 31
    assert all(len(p) == 2 for p in out[63:])     # back on the first run after they reappear (frame 62)


def test_max_persons_caps_the_persons_of_a_frame():
    frames = [blob_frame([(50, 90, 16, 50), (150, 90, 16, 50), (250, 90, 16, 50)])] * 5
    out, _, _ = run(frames, max_persons=2)
    assert all(len(p) == 2 for p in out)
    out, _, _ = run(frames)
    assert all(len(p) == 3 for p in out)


def test_with_max_persons_followed_the_detector_rests():
    frames = [blob_frame([(60 + f, 90, 16, 50)]) for f in range(60)]
    out, detector, _ = run(frames, max_persons=1)
    assert all(len(p) == 1 for p in out) and {p.track_id for people in out for p in people} == {0}
    assert detector.frames == 1


def test_nobody_in_black_frames():
    out, detector, models = run([np.zeros((180, 320, 3), np.uint8)] * 20)
    assert all(not p for p in out) and models.landmark_batches == []
    assert detector.frames == 2


def segment_of(frames, start=40, scale=2):
    h, w = frames[0].shape[:2]
    seg = common_pb2.FrameSegment(start_frame=start, width=w, height=h, source_width=scale * w,
                                  source_height=scale * h, timestamps_s=[(start + i) / 30 for i in range(len(frames))])
    seg.jpeg.extend(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes() for f in frames)
    return seg


def test_estimate_segment_people_scales_to_source_pixels_and_numbers_frames():
    frames = [blob_frame([(100, 90, 16, 50), (220, 90, 16, 50)])] * 4
    poses = estimate_segment_people(segment_of(frames), BlobDetector(), BlazePoseFollower(BlobModels()))
    assert [f.frame_index for f in poses.frames] == [40, 41, 42, 43]
    assert poses.frames[1].timestamp_s == pytest.approx(41 / 30)
    for frame in poses.frames:
        assert [p.track_id for p in frame.persons] == [0, 1]
        for p, x in zip(frame.persons, (200, 440)):
            coco, blaze = from_proto(p.coco17), from_proto(p.blazepose33)
            assert coco.shape == (17, 3) and blaze.shape == (33, 3)
            assert abs((p.box.x_min + p.box.x_max) / 2 - x) < 6 and p.box.x_max <= 640
            assert 0.5 <= p.score <= 1


def test_a_photo_is_also_searched_in_tiles():
    detector = BlobDetector()
    estimate_segment_people(segment_of([blob_frame([(100, 90, 16, 50)], size=(640, 360))]), detector,
                            BlazePoseFollower(BlobModels()))
    assert detector.frames > 1                  # the whole frame and its tiles
    detector = BlobDetector()
    estimate_segment_people(segment_of([blob_frame([(100, 90, 16, 50)], size=(640, 360))] * 2), detector,
                            BlazePoseFollower(BlobModels()))
    assert detector.frames == 1                 # a video: the whole frame only


@pytest.mark.skipif(bool(missing_model_files()) or not (REPOSITORY_DIR / "person_detector" / "1" / "model.onnx").is_file(),
                    reason="model files absent: run `make models detector`")
def test_real_models_follow_both_people_of_the_office_clip():
    from bench.local_models import LocalBlazePose, LocalPersonDetector

    with av.open(str(DATA / "two_people_office_24f.mp4")) as container:
        frames = [cv2.resize(f.to_ndarray(format="bgr24"), (640, 360), interpolation=cv2.INTER_AREA)
                  for f in container.decode(video=0)]
    out = track_people(frames, LocalPersonDetector(), BlazePoseFollower(LocalBlazePose()), PeopleOptions())
    assert sum(len(p) == 2 for p in out) >= 20
    ids = {p.track_id for people in out for p in people}
    assert ids == {0, 1}, ids
    # each id stays on one side: the two never swap
    for track in ids:
        xs = [(p.found.box[0] + p.found.box[2]) / 2 for people in out for p in people if p.track_id == track]
        assert np.ptp(xs) < 120


def test_a_new_person_on_a_photo_gets_a_wider_roi_and_one_more_aligned_pass_than_in_video():
    follower = BlazePoseFollower(BlobModels(), refine_with_heatmap=False)
    box = (92.0, 65.0, 108.0, 115.0)
    assert follower.region_from_box(box).size == pytest.approx(1.25 * 50)
    assert follower.region_from_box(box, still=True).size == pytest.approx(1.4 * 50)
    frame = blob_frame([(100, 90, 16, 50)])
    (video,) = follower.find(frame, [follower.region_from_box(box)], new=True)
    assert follower.crops == 2                       # the box's ROI, then the aligned one
    (photo,) = follower.find(frame, [follower.region_from_box(box, still=True)], new=True, still=True)
    assert follower.crops == 2 + 3                   # the box's ROI, then two aligned ones
    assert video.present and photo.present
    assert abs((photo.box[0] + photo.box[2]) / 2 - 100) < 4 and abs((video.box[0] + video.box[2]) / 2 - 100) < 4


def test_on_a_photo_false_boxes_do_not_use_up_the_places_of_real_people():
    """Two detections per place are tried on a still image: with max_persons 1 and a false box scored
    above the person's, the person is still found (in video the best box alone is tried)."""
    class FalseFirst(BlobDetector):
        def infer(self, images):
            scores, bins = super().infer(images)
            info = self.info
            level = info.levels[-1]
            offset = info.cells - level.rows * level.cols
            scores[:, offset] = 0.95                  # a box in the empty top-left corner, the best score
            return scores, bins

    frame = blob_frame([(200, 90, 16, 50)])
    (people,) = track_people([frame], FalseFirst(), BlazePoseFollower(BlobModels(), refine_with_heatmap=False),
                             PeopleOptions(max_persons=1, tiles=False))
    assert len(people) == 1 and abs((people[0].found.box[0] + people[0].found.box[2]) / 2 - 200) < 4


def test_a_segment_with_a_broken_jpeg_is_refused_naming_the_frame():
    from services.common.errors import InvalidInput
    segment = segment_of([blob_frame([(100, 90, 16, 50)])] * 5)
    segment.jpeg[2] = b"not a jpeg"
    with pytest.raises(InvalidInput, match="frame 2 of the segment is not a decodable JPEG"):
        estimate_segment_people(segment, BlobDetector(), BlazePoseFollower(BlobModels()))
