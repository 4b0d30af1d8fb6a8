"""Tracking logic and segment estimation, on synthetic frames with stand-in models (white blobs are
people), plus the real BlazePose models in-process on the committed clip when `make models` ran."""
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from bench.local_models import repository_blazepose_info
from hpe3d.v1 import common_pb2
from services.common.arrays import from_proto
from services.common.errors import InvalidInput
from services.pose2d.blazepose import ssd_anchors
from services.pose2d.estimator import EstimatorOptions, PoseTracker
from services.pose2d.segment import decode_reduction, estimate_segment, frames_with_person
from services.triton.repositories import missing_model_files

DATA = Path(__file__).resolve().parent.parent / "data"
# the served models' sizes, from their config.pbtxt (as the pose2d client learns them from Triton)
INFO = repository_blazepose_info()
DETECTOR_SIZE, NUM_ANCHORS = INFO.detector_size, INFO.num_anchors


class BlobModels:
    """Stand-in for the two models. Detector: every white blob of the input is a person (hip at its
    centre, size point above it by half its height). Landmark model: follows the white blob nearest
    the crop centre; the pose flag is how white the middle of the crop is."""

    info = INFO

    def __init__(self):
        self.detect_calls = 0
        self.landmark_batches = []

    def detect(self, images):
        self.detect_calls += 1
        anchors = ssd_anchors(DETECTOR_SIZE) * DETECTOR_SIZE
        regressors = np.zeros((len(images), NUM_ANCHORS, 12), np.float32)
        scores = np.full((len(images), NUM_ANCHORS, 1), -20.0, np.float32)
        for n, image in enumerate(images):
            mask = (image[..., 0] > 127).astype(np.uint8)
            count, _, stats, centres = cv2.connectedComponentsWithStats(mask)
            for k in range(1, count):
                _, _, w, h, _ = stats[k]
                centre = centres[k]
                a = int(np.argmin(((anchors - centre) ** 2).sum(axis=1) + (scores[n, :, 0] > 0) * 1e9))
                regressors[n, a, 0:2] = centre - anchors[a]
                regressors[n, a, 2:4] = (w, h)
                regressors[n, a, 4:6] = centre - anchors[a]
                regressors[n, a, 6:8] = centre + (0, -h / 2) - anchors[a]
                scores[n, a] = 6.0
        return regressors, scores

    def landmarks(self, crops, heatmap=True):
        self.landmark_batches.append(len(crops))
        n = len(crops)
        lm = np.zeros((n, 39, 5), np.float32)
        flag = np.zeros((n, 1), np.float32)
        for i, crop in enumerate(crops):
            white = (crop[..., 0] > 127).astype(np.uint8)
            count, labels, stats, centres = cv2.connectedComponentsWithStats(white)
            if count < 2:
                continue
            k = 1 + int(np.argmin(((centres[1:] - 128) ** 2).sum(axis=1)))
            x, y, w, h, _ = stats[k]
            flag[i] = (labels[96:160, 96:160] == k).mean()
            grid = np.stack(np.meshgrid(np.linspace(x, x + w, 11), np.linspace(y, y + h, 3)), -1).reshape(-1, 2)
            lm[i, :33, :2] = grid[:33]
            lm[i, 33, :2] = centres[k]
            lm[i, 34, :2] = centres[k] + (0, -h / 2)
            lm[i, :, 3:5] = 4.0
        out = {"landmarks": lm.reshape(n, 195), "pose_flag": flag}
        if heatmap:
            out["heatmap"] = np.full((n, 64, 64, 39), -10.0, np.float32)
        return out


def blob_frame(blobs, size=(320, 180)):
    frame = np.zeros((size[1], size[0], 3), np.uint8)
    for cx, cy, w, h in blobs:
        frame[int(cy - h / 2):int(cy + h / 2), int(cx - w / 2):int(cx + w / 2)] = 255
    return frame


def run(frames, **options):
    models = BlobModels()
    tracker = PoseTracker(models, EstimatorOptions(**options))
    return [tracker.update(f) for f in frames], models, tracker


def centre_of(person):
    x0, y0, x1, y1 = person.landmarks.body_box()
    return (x0 + x1) / 2, (y0 + y1) / 2


def test_one_person_is_detected_once_then_tracked():
    frames = [blob_frame([(80 + 4 * t, 90, 20, 60)]) for t in range(12)]
    results, models, tracker = run(frames, max_persons=1)
    assert all(len(r) == 1 and r[0].track_id == 0 for r in results)
    assert models.detect_calls == 1                      # only the first frame
    assert sum(models.landmark_batches) == 12            # one crop a frame
    for t, r in enumerate(results):
        cx, cy = centre_of(r[0])
        assert cx == pytest.approx(80 + 4 * t, abs=2) and cy == pytest.approx(90, abs=2)
        box = r[0].landmarks.body_box()
        assert box[3] - box[1] == pytest.approx(60, abs=3)


def test_lost_person_is_searched_for_on_the_same_frame_and_gets_a_new_id():
    frames = [blob_frame([(100, 90, 20, 60)])] * 3 + [blob_frame([])] * 2 + [blob_frame([(200, 90, 20, 60)])] * 2
    results, models, _ = run(frames, max_persons=1)
    assert [len(r) for r in results] == [1, 1, 1, 0, 0, 1, 1]
    assert [r[0].track_id for r in results if r] == [0, 0, 0, 1, 1]
    assert centre_of(results[5][0])[0] == pytest.approx(200, abs=2)
    assert models.detect_calls == 4                      # frame 0, the loss at 3, nobody at 4, found at 5


def test_two_people_batched_and_a_newcomer_picked_up_within_the_interval():
    two = [(80, 90, 20, 60), (240, 90, 20, 60)]
    frames = [blob_frame(two[:1])] * 2 + [blob_frame(two)] * 8
    results, models, _ = run(frames, max_persons=2, detect_interval=4)
    counts = [len(r) for r in results]
    assert counts[:2] == [1, 1] and counts[-1] == 2 and counts.index(2) <= 4
    ids = {p.track_id for r in results for p in r}
    assert ids == {0, 1}
    assert centre_of([p for p in results[-1] if p.track_id == 1][0])[0] == pytest.approx(240, abs=2)
    assert max(models.landmark_batches) == 2             # both tracked people in one call


def test_max_persons_caps_the_people_followed():
    frames = [blob_frame([(60, 90, 20, 60), (160, 90, 20, 60), (260, 90, 20, 60)])] * 3
    results, _, _ = run(frames, max_persons=2)
    assert [len(r) for r in results] == [2, 2, 2]
    results, _, _ = run(frames, max_persons=3)
    assert [len(r) for r in results] == [3, 3, 3]


def test_nobody_means_no_person_and_a_detector_run_every_frame():
    results, models, tracker = run([blob_frame([])] * 5, max_persons=2)
    assert results == [[]] * 5
    assert models.detect_calls == 5 and models.landmark_batches == []
    assert tracker.detector_runs == 5 * 4               # whole frame + 3 square tiles of 16:9


def test_estimate_segment_scales_to_source_pixels_and_numbers_frames():
    frames = [blob_frame([(100 + 2 * t, 90, 20, 60)]) for t in range(4)] + [blob_frame([])]
    segment = common_pb2.FrameSegment(start_frame=40, width=320, height=180, source_width=1280, source_height=720,
                                      timestamps_s=[1.0 + t / 30 for t in range(5)])
    segment.jpeg.extend(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes() for f in frames)
    poses = estimate_segment(segment, BlobModels(), EstimatorOptions(max_persons=2))
    assert (poses.start_frame, poses.frame_count, len(poses.frames)) == (40, 5, 5)
    assert [f.frame_index for f in poses.frames] == [40, 41, 42, 43, 44]
    assert poses.frames[2].timestamp_s == pytest.approx(1.0 + 2 / 30)
    assert frames_with_person(poses) == 4 and not poses.frames[4].persons
    person = poses.frames[0].persons[0]
    coco, blaze = from_proto(person.coco17), from_proto(person.blazepose33)
    assert coco.shape == (17, 3) and blaze.shape == (33, 3)
    assert blaze[:, 0].min() == pytest.approx(90 * 4, abs=8) and blaze[:, 0].max() == pytest.approx(110 * 4, abs=8)
    assert blaze[:, 1].min() == pytest.approx(60 * 4, abs=8) and blaze[:, 1].max() == pytest.approx(120 * 4, abs=8)
    assert person.box.x_min == pytest.approx(blaze[:, 0].min()) and person.box.y_max == pytest.approx(blaze[:, 1].max())
    assert 0.9 < person.score <= 1 and np.all((coco[:, 2] > 0.9) & (coco[:, 2] <= 1))
    assert np.array_equal(coco[0], blaze[0]) and np.array_equal(coco[16], blaze[28])   # nose, right ankle


def test_estimate_segment_rejects_broken_jpegs_and_accepts_empty_segments():
    segment = common_pb2.FrameSegment(start_frame=0, width=320, height=180, jpeg=[b"not a jpeg"])
    with pytest.raises(InvalidInput, match="frame 0"):
        estimate_segment(segment, BlobModels())
    empty = estimate_segment(common_pb2.FrameSegment(start_frame=7), BlobModels())
    assert (empty.start_frame, empty.frame_count, len(empty.frames)) == (7, 0, 0)


def test_decode_reduction():
    assert decode_reduction(640, 360) == 1 and decode_reduction(1280, 720) == 2 and decode_reduction(7680, 4320) == 4


def clip_frames(name):
    path = DATA / name
    if not path.exists():
        pytest.skip(f"{path} absent")
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


@pytest.mark.skipif(bool(missing_model_files()), reason="BlazePose .tflite files absent: run `make models`")
def test_real_models_follow_the_people_of_the_office_clip():
    from bench.local_models import LocalBlazePose

    frames = clip_frames("two_people_office_24f.mp4")
    tracker = PoseTracker(LocalBlazePose(), EstimatorOptions(max_persons=2))
    results = [tracker.update(f) for f in frames]
    assert sum(1 for r in results if r) >= 0.9 * len(frames)
    assert sum(1 for r in results if len(r) == 2) >= 2            # the second person, once in the open
    h, w = frames[0].shape[:2]
    margin = 0.1 * h   # the first person walks towards the camera: feet just below the bottom edge
    for people in results:
        for p in people:
            kp = p.landmarks.keypoints()
            seen = kp[kp[:, 2] > 0.5]
            assert len(seen) >= 10
            assert np.all((seen[:, 0] >= -margin) & (seen[:, 0] <= w + margin)
                          & (seen[:, 1] >= -margin) & (seen[:, 1] <= h + margin))
            # upright people: shoulders above hips above ankles (image y grows downwards)
            shoulders, hips = kp[[11, 12], 1].mean(), kp[[23, 24], 1].mean()
            assert shoulders < hips and kp[0, 1] < shoulders
    # the first person stands in the middle of the frame at the start
    first = results[0][0].landmarks
    assert 200 < first.points[33, 0] < 420 and first.pose_flag > 0.9


@pytest.mark.skipif(bool(missing_model_files()), reason="BlazePose .tflite files absent: run `make models`")
def test_real_models_find_nobody_in_an_empty_office_corner():
    from bench.local_models import LocalBlazePose

    frames = clip_frames("nobody_24f.mp4")[:6] + [np.zeros((360, 640, 3), np.uint8)] * 2
    tracker = PoseTracker(LocalBlazePose(), EstimatorOptions(max_persons=2))
    assert all(tracker.update(f) == [] for f in frames)


@pytest.mark.skipif(bool(missing_model_files()), reason="BlazePose .tflite files absent: run `make models`")
def test_matches_mediapipe_own_pose_solution():
    """Detector + ROI + landmark decoding agree with MediaPipe's own graph (its output on the same
    frames is stored in tests/data/mediapipe_pose_24f.json): about a pixel at 640x360."""
    import json

    from bench.local_models import LocalBlazePose

    reference = json.loads((DATA / "mediapipe_pose_24f.json").read_text())["frames"]
    frames = clip_frames("two_people_office_24f.mp4")
    models = LocalBlazePose()
    errors, visibility = [], []
    for frame, ref in zip(frames, reference):
        # static-image mode: a fresh detection on every frame, whole frame only, one person
        people = PoseTracker(models, EstimatorOptions(max_persons=1, search_tiles=False)).update(frame)
        assert people and ref is not None
        ref = np.asarray(ref, np.float32)
        lm = people[0].landmarks
        errors.append(np.hypot(*(lm.points[:33, :2] - ref[:, :2]).T))
        visibility.append(np.abs(lm.visibility[:33] - ref[:, 2]))
    errors = np.concatenate(errors)
    assert np.median(errors) < 2.0 and np.percentile(errors, 95) < 10.0
    assert np.mean(np.concatenate(visibility)) < 0.05
