"""BlazePose pre/post-processing maths: anchors, letterbox, ROI, crops, decoding, NMS, heatmaps."""
import math

import numpy as np
import pytest

from services.common.skeletons import BLAZEPOSE33, COCO17, blazepose33_to_coco17
from bench.local_models import repository_blazepose_info
from services.pose2d import blazepose as bp

# the served models' sizes, from their config.pbtxt (as the pose2d client learns them from Triton)
INFO = repository_blazepose_info()
DETECTOR_SIZE, LANDMARK_SIZE, NUM_ANCHORS = INFO.detector_size, INFO.landmark_size, INFO.num_anchors


def test_anchor_count_and_layout():
    anchors = bp.ssd_anchors(DETECTOR_SIZE)
    assert anchors.shape == (NUM_ANCHORS, 2) == (2254, 2)
    # stride 8: 28x28 cells, 2 anchors each, row-major; first anchors at the first cell's centre
    assert np.allclose(anchors[0], [0.5 / 28, 0.5 / 28]) and np.allclose(anchors[1], anchors[0])
    assert np.allclose(anchors[2], [1.5 / 28, 0.5 / 28])
    assert np.allclose(anchors[2 * 28], [0.5 / 28, 1.5 / 28])
    # stride 16 starts after 28*28*2; the three stride-32 layers share a 7x7 grid with 6 anchors a cell
    assert np.allclose(anchors[1568], [0.5 / 14, 0.5 / 14])
    assert np.allclose(anchors[1568 + 392: 1568 + 392 + 6], [0.5 / 7, 0.5 / 7])
    assert np.allclose(anchors[-1], [6.5 / 7, 6.5 / 7])
    assert anchors.min() > 0 and anchors.max() < 1


def test_detector_input_letterboxes_in_rgb():
    frame = np.full((360, 640, 3), 255, np.uint8)
    frame[:, :, 0] = 0  # blue channel 0 in BGR -> last RGB channel
    tensor, lb = bp.detector_input(frame, DETECTOR_SIZE)
    assert tensor.shape == (224, 224, 3) and tensor.dtype == np.uint8
    assert lb.pad_x == 0 and lb.pad_y == pytest.approx((224 - 126) / 2, abs=1)
    assert np.array_equal(tensor[0, 0], [0, 0, 0])             # padding is black
    assert np.array_equal(tensor[112, 112], [255, 255, 0])     # RGB order
    tall, lb_tall = bp.detector_input(np.full((300, 100, 3), 9, np.uint8), DETECTOR_SIZE)
    assert lb_tall.pad_y == 0 and lb_tall.pad_x > 70 and tall[112, 112, 0] == 9 and tall[112, 5, 0] == 0
    # the letterbox maps tensor corners of the image back onto the frame's
    corners = lb.to_frame(np.array([[0, lb.pad_y / 224], [1, 1 - lb.pad_y / 224]], np.float32))
    assert np.allclose(corners, [[0, 0], [640, 360]], atol=2)


def test_landmark_input_range_and_colour_order():
    frame = np.zeros((100, 100, 3), np.uint8)
    frame[..., 2] = 255  # red in BGR
    crop = bp.landmark_input(frame, bp.Roi(50, 50, 40, 0.3), LANDMARK_SIZE)
    assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8
    assert np.array_equal(crop[128, 128], [255, 0, 0])
    far = bp.landmark_input(frame, bp.Roi(0, 0, 400, 0), LANDMARK_SIZE)
    assert np.array_equal(far[5, 5], [0, 0, 0])                # outside the frame: black


def test_roi_from_alignment_upright_and_turned():
    upright = bp.roi_from_alignment(np.array([100, 200]), np.array([100, 120]))
    assert upright.rotation == pytest.approx(0) and upright.size == pytest.approx(2 * 80 * 1.25)
    assert (upright.cx, upright.cy) == (100, 200)
    # lying with the head to the right: the crop's "up" must point right in the frame
    lying = bp.roi_from_alignment(np.array([100, 200]), np.array([180, 200]))
    assert lying.rotation == pytest.approx(math.pi / 2)
    top_centre = bp.crop_to_frame(np.array([128, 0]), lying, LANDMARK_SIZE)
    assert top_centre[0] > 100 + 50 and top_centre[1] == pytest.approx(200, abs=1e-3)
    upside_down = bp.roi_from_alignment(np.array([0, 0]), np.array([0, 10]))
    assert abs(upside_down.rotation) == pytest.approx(math.pi)


@pytest.mark.parametrize("rotation", [0.0, 0.4, -2.5, math.pi])
def test_crop_frame_round_trip_and_warp_agree(rotation):
    roi = bp.Roi(cx=210.5, cy=140.0, size=120.0, rotation=rotation)
    pts = np.array([[0, 0], [256, 256], [40.5, 200.25], [128, 128]], np.float32)
    round_trip = bp.frame_to_crop(bp.crop_to_frame(pts, roi, LANDMARK_SIZE), roi, LANDMARK_SIZE)
    assert np.allclose(round_trip, pts, atol=1e-3)
    assert np.allclose(bp.crop_to_frame(np.array([128, 128]), roi, LANDMARK_SIZE), [roi.cx, roi.cy], atol=1e-4)
    # a bright dot in the frame lands in the crop where frame_to_crop says
    frame = np.zeros((300, 400, 3), np.uint8)
    dot = np.array([230.0, 120.0])
    frame[int(dot[1]) - 1:int(dot[1]) + 2, int(dot[0]) - 1:int(dot[0]) + 2] = 255
    crop = bp.landmark_input(frame, roi, LANDMARK_SIZE)[..., 0].astype(np.float32) / 255
    ys, xs = np.nonzero(crop > 0.2)
    found = np.array([np.average(xs, weights=crop[ys, xs]), np.average(ys, weights=crop[ys, xs])])
    expected = bp.frame_to_crop(dot + 0.5 - 0.5, roi, LANDMARK_SIZE)
    assert np.allclose(found, expected, atol=2.5)
    # the ROI's bounds hold its corners
    x0, y0, x1, y1 = roi.bounds()
    assert np.all((roi.corners() >= [x0 - 1e-3, y0 - 1e-3]) & (roi.corners() <= [x1 + 1e-3, y1 + 1e-3]))


def encode_detection(anchor_index, centre, size, keypoints):
    """Raw detector outputs that decode to one detection (tensor pixels): the inverse of decoding."""
    anchors = bp.ssd_anchors(DETECTOR_SIZE) * DETECTOR_SIZE
    regressors = np.zeros((NUM_ANCHORS, 12), np.float32)
    scores = np.full((NUM_ANCHORS, 1), -20.0, np.float32)
    a = anchors[anchor_index]
    regressors[anchor_index, 0:2] = np.asarray(centre) - a
    regressors[anchor_index, 2:4] = size
    regressors[anchor_index, 4:12] = (np.asarray(keypoints, np.float32) - a).ravel()
    scores[anchor_index] = 4.0
    return regressors, scores


def test_decode_detection_back_to_frame_pixels():
    frame_w, frame_h = 640, 360
    _, lb = bp.detector_input(np.zeros((frame_h, frame_w, 3), np.uint8), DETECTOR_SIZE)
    # a person whose hip is at (320, 200) in the frame and whose size point is at (320, 100)
    to_tensor = lambda p: np.asarray(p, np.float32) * lb.scale + [lb.pad_x, lb.pad_y]  # noqa: E731
    kps = [to_tensor(p) for p in ([320, 200], [320, 100], [320, 150], [320, 90])]
    regressors, scores = encode_detection(1000, to_tensor([320, 80]), [20, 20], kps)
    dets = bp.decode_detections(regressors, scores, lb)
    assert len(dets) == 1
    det = dets[0]
    assert det.score == pytest.approx(1 / (1 + math.exp(-4)), abs=1e-4)
    assert np.allclose(det.keypoints[0], [320, 200], atol=0.5) and np.allclose(det.keypoints[1], [320, 100], atol=0.5)
    assert det.reach == pytest.approx(100, abs=0.5)
    roi = det.roi()
    assert (roi.cx, roi.cy) == pytest.approx((320, 200), abs=0.5) and roi.size == pytest.approx(250, abs=1)
    assert roi.rotation == pytest.approx(0, abs=1e-3)
    box = det.box
    assert (box[0] + box[2]) / 2 == pytest.approx(320, abs=0.5) and (box[1] + box[3]) / 2 == pytest.approx(80, abs=0.5)
    # below the score threshold nothing is returned
    assert bp.decode_detections(regressors, scores - 10, lb) == []
    # shifted into a larger frame
    moved = det.shifted(100, 5)
    assert np.allclose(moved.keypoints[0], [420, 205], atol=0.5) and moved.box[0] == pytest.approx(box[0] + 100)


def test_weighted_nms_merges_overlaps_and_keeps_separate_people():
    boxes = np.array([[0.1, 0.1, 0.3, 0.5], [0.11, 0.1, 0.31, 0.5], [0.6, 0.1, 0.8, 0.5]], np.float32)
    kps = np.zeros((3, 4, 2), np.float32)
    kps[:, 0] = [[0.2, 0.3], [0.22, 0.3], [0.7, 0.3]]
    scores = np.array([0.9, 0.6, 0.7], np.float32)
    merged = bp.weighted_nms(boxes, kps, scores, 0.3)
    assert [round(s, 2) for s, _, _ in merged] == [0.9, 0.7]
    score, box, kp = merged[0]
    assert kp[0, 0] == pytest.approx((0.2 * 0.9 + 0.22 * 0.6) / 1.5)   # score-weighted mean
    assert box[0] == pytest.approx((0.1 * 0.9 + 0.11 * 0.6) / 1.5)


def test_refine_from_heatmap_moves_to_the_peak_only_when_confident():
    heatmap = np.full((64, 64, 2), -10.0, np.float32)
    heatmap[20, 30, 0] = 10.0        # a sharp, confident peak for landmark 0 at column 30, row 20
    heatmap[40, 10, 1] = -0.5        # landmark 1's peak is below 0.5 after the sigmoid
    xy = np.array([[31 / 64, 21 / 64], [10 / 64, 40 / 64]], np.float32)
    out = bp.refine_from_heatmap(xy, heatmap)
    assert np.allclose(out[0], [30 / 64, 20 / 64], atol=1e-3)
    assert np.allclose(out[1], xy[1])
    # outside the heatmap: untouched
    assert np.allclose(bp.refine_from_heatmap(np.array([[1.5, 0.5]], np.float32), heatmap[..., :1]), [[1.5, 0.5]])


def test_decode_landmarks_synthetic_crop_to_frame():
    roi = bp.Roi(cx=300, cy=200, size=128, rotation=math.pi / 2)
    raw = np.zeros((39, 5), np.float32)
    raw[:, 0:2] = 128                       # every landmark at the crop centre ...
    raw[0, 0:2] = [128, 0]                  # ... but the nose at the top centre of the crop
    raw[33, 0:2] = [128, 128]               # alignment: hip centre
    raw[34, 0:2] = [128, 128 - 256 / 2.5]   # size point: gives the same ROI back (side = 2 x reach x 1.25)
    raw[:, 3] = 3.0                         # visibility logit
    raw[:, 4] = -3.0                        # presence logit
    lm = bp.decode_landmarks(raw.ravel(), 0.9, roi, crop_size=LANDMARK_SIZE)
    assert np.allclose(lm.points[1, :2], [300, 200], atol=1e-3)
    assert np.allclose(lm.points[0, :2], [300 + 64, 200], atol=1e-3)   # crop top is frame right at 90 deg
    assert lm.visibility[0] == pytest.approx(1 / (1 + math.exp(-3)), abs=1e-5)
    assert lm.presence[0] == pytest.approx(1 / (1 + math.exp(3)), abs=1e-5)
    assert lm.present and lm.reach == pytest.approx(128 / 2.5, abs=1e-3)
    nxt = lm.next_roi()
    assert (nxt.cx, nxt.cy, nxt.size, nxt.rotation) == pytest.approx((300, 200, 128, math.pi / 2), abs=1e-3)
    kp = lm.keypoints()
    assert kp.shape == (33, 3) and kp[0, 2] == pytest.approx(lm.visibility[0] * lm.presence[0])
    assert lm.contains(np.array([300, 200])) and not lm.contains(np.array([0, 0]))


def test_coco_mapping_picks_the_named_joints():
    kp = np.arange(33 * 3, dtype=np.float32).reshape(33, 3)
    coco = blazepose33_to_coco17(kp)
    assert coco.shape == (17, 3)
    for c, name in enumerate(COCO17.joints):
        assert np.array_equal(coco[c], kp[BLAZEPOSE33.index(name)])


def test_square_tiles_cover_wide_and_tall_frames():
    assert bp.square_tiles(640, 360) == [(0, 0, 360), (140, 0, 360), (280, 0, 360)]
    assert bp.square_tiles(360, 640) == [(0, 0, 360), (0, 140, 360), (0, 280, 360)]
    assert bp.square_tiles(400, 380) == []
    tiles = bp.square_tiles(1000, 300)
    assert tiles[0][0] == 0 and tiles[-1][0] + 300 == 1000
    assert all(b[0] - a[0] <= 150 for a, b in zip(tiles, tiles[1:]))


def test_same_place_and_iou():
    assert bp.same_place(np.array([0, 0]), 100, np.array([30, 0]), 80)
    assert not bp.same_place(np.array([0, 0]), 100, np.array([60, 0]), 40)
    assert bp.box_iou((0, 0, 2, 2), (1, 1, 3, 3)) == pytest.approx(1 / 7)
    assert bp.box_iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0


def test_landmark_input_writes_into_a_batch_slot():
    frame = np.full((50, 80, 3), 128, np.uint8)
    batch = np.zeros((2, LANDMARK_SIZE, LANDMARK_SIZE, 3), np.uint8)
    bp.landmark_input(frame, bp.Roi(40, 25, 20, 0), LANDMARK_SIZE, out=batch[1])
    assert np.all(batch[1, 128, 128] == 128) and np.all(batch[0] == 0)
