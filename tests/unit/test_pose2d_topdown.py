"""Top-down crops, heatmap decoding, flip test (services/pose2d/topdown.py), the top-down follower
(keypoint_followers.py) and the catalog, with a stand-in heatmap model: no weights, no server."""
from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from bench.local_models import repository_blazepose_info
from services.common.errors import InvalidInput, WeightsMissing
from services.pose2d.catalog import PoseModelCatalog
from services.pose2d.keypoint_followers import TopDownFollower, box_of_joints
from services.pose2d.topdown import (COCO17_FLIP_PAIRS, crop_box, cut_crop, decode_heatmaps, flip_back,
                                     keypoints_in_frame, topdown_keypoints)
from services.pose2d.topdown_client import HeatmapModelInfo, model_input

INFO = HeatmapModelInfo("stand_in", "image", "uint8", 192, 256, 17, 48, 64, 8)


class DotFinder:
    """A stand-in top-down model: joint j's heatmap is a Gaussian at the centre of the pixels of
    colour (j * 10 + 50, 255 - j * 10, 128) in the crop -- the heatmap of a perfect model. With
    ``mirrored_second_half`` (a flip-test batch: direct crops, then their mirror images) it labels
    the mirrored crops as a model that tells left from right by appearance does: a left joint's dot,
    mirrored, is seen as the right joint."""

    info = INFO

    def __init__(self, mirrored_second_half: bool = False):
        self.mirrored_second_half = mirrored_second_half

    def heatmaps(self, crops: np.ndarray) -> np.ndarray:
        out = np.zeros((len(crops), 17, 64, 48), np.float32)
        yy, xx = np.mgrid[0:64, 0:48]
        partner = {a: b for pair in COCO17_FLIP_PAIRS for a, b in (pair, pair[::-1])}
        for n, crop in enumerate(crops):
            mirrored = self.mirrored_second_half and n >= len(crops) // 2
            for j in range(17):
                colour = np.array([j * 10 + 50, 255 - j * 10, 128])
                hit = np.all(np.abs(crop.astype(int) - colour) <= 3, axis=-1)
                if hit.any():
                    v, u = np.nonzero(hit)
                    # the official heatmaps put crop pixel (u, v) at heatmap (u / 4, v / 4)
                    cx, cy = u.mean() / 4, v.mean() / 4
                    out[n, partner.get(j, j) if mirrored else j] = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 1.5 ** 2))
        return out


def frame_with_joints(points: np.ndarray, size=(360, 640)) -> np.ndarray:
    """A BGR frame with joint j's dot in the RGB colour DotFinder looks for."""
    frame = np.zeros((*size, 3), np.uint8)
    for j, (x, y) in enumerate(points):
        cv2.circle(frame, (int(round(x)), int(round(y))), 3, (128, 255 - j * 10, j * 10 + 50), -1)
    return frame


def test_crop_box_keeps_the_model_aspect_and_pads():
    region = crop_box((100, 50, 200, 350), 192 / 256)
    assert (region.cx, region.cy) == (150, 200)
    assert region.height == pytest.approx(300 * 1.25) and region.width / region.height == pytest.approx(0.75)
    wide = crop_box((0, 0, 300, 100), 0.75)
    assert wide.width == pytest.approx(375) and wide.height == pytest.approx(500)


def test_crop_and_back_map_a_point():
    region = crop_box((300, 100, 400, 300), 0.75)
    m = region.crop_matrix(192, 256)
    point = np.array([330.0, 140.0])
    crop_pt = m[:, :2] @ point + m[:, 2]
    assert np.allclose(region.to_frame(crop_pt, 192, 256), point, atol=1e-4)
    assert np.allclose(region.to_frame(crop_pt / 4, 48, 64), point, atol=1e-4)


def test_decode_refines_by_a_quarter_toward_the_higher_neighbour():
    hm = np.zeros((1, 17, 64, 48), np.float32)
    hm[0, 0, 10, 20] = 1.0
    hm[0, 0, 10, 21] = 0.5       # right neighbour higher -> +0.25 in x
    hm[0, 0, 9, 20] = 0.4        # upper neighbour higher -> -0.25 in y
    hm[0, 1, 0, 0] = 0.7         # on the border: no refinement
    hm[0, 2, 1, 1] = 0.9         # one in from the border: the official bounds (1 < x, 1 < y) leave it too
    hm[0, 2, 1, 2] = 0.5
    coords, scores = decode_heatmaps(hm)
    assert coords[0, 0].tolist() == [20.25, 9.75] and scores[0, 0] == pytest.approx(1.0)
    assert coords[0, 1].tolist() == [0.0, 0.0] and scores[0, 1] == pytest.approx(0.7)
    assert coords[0, 2].tolist() == [1.0, 1.0]


def test_flip_back_mirrors_swaps_and_shifts():
    hm = np.zeros((1, 17, 4, 6), np.float32)
    hm[0, 5, 1, 1] = 1.0                      # left shoulder seen in the mirrored crop
    back = flip_back(hm)
    assert back[0, 6, 1, 6 - 1 - 1 + 1] == 1.0   # right shoulder, mirrored (x=4), shifted one right (x=5)
    assert back[0, 5].sum() == 0
    assert len(COCO17_FLIP_PAIRS) == 8


@pytest.mark.parametrize("flip", [False, True])
def test_a_perfect_model_gives_the_joints_back_in_frame_pixels(flip):
    rng = np.random.default_rng(0)
    grid = np.array([(275 + 30 * (j % 4), 60 + 50 * (j // 4)) for j in range(17)], np.float64)
    points = grid + rng.uniform(-8, 8, grid.shape)          # dots 14+ pixels apart
    frame = frame_with_joints(points)
    boxes = [[(260.0, 50.0, 380.0, 330.0)]]
    (kp,) = topdown_keypoints([frame], boxes, DotFinder(mirrored_second_half=flip), flip_test=flip)
    assert kp.shape == (17, 3)
    # the official heatmap grid puts a joint up to ~1.5 crop pixels off (heatmap pixel k = crop pixel 4k)
    scale = crop_box(boxes[0][0], 0.75).width / 192
    err = np.hypot(*(kp[:, :2] - points).T)
    assert np.median(err) < 2.5 * scale and err.max() < 5 * scale, err
    assert np.all(kp[:, 2] > 0.5)


def test_keypoints_in_frame_uses_each_region():
    hm = np.zeros((2, 17, 64, 48), np.float32)
    hm[:, :, 32, 24] = 0.9
    regions = [crop_box((0, 0, 75, 100), 0.75), crop_box((200, 100, 275, 200), 0.75)]
    kp = keypoints_in_frame(hm, regions)
    assert np.allclose(kp[0, :, :2], [37.5, 50.0]) and np.allclose(kp[1, :, :2], [237.5, 150.0])


def test_the_top_down_follower_finds_the_joints_and_boxes_them_for_the_next_frame():
    rng = np.random.default_rng(1)
    grid = np.array([(275 + 30 * (j % 4), 60 + 50 * (j // 4)) for j in range(17)], np.float64)
    points = grid + rng.uniform(-8, 8, grid.shape)
    follower = TopDownFollower(DotFinder(mirrored_second_half=True), flip_test=True)
    detector_box = (250.0, 40.0, 390.0, 340.0)
    (found,) = follower.find(frame_with_joints(points), [follower.region_from_box(detector_box)], new=True)
    assert found.present and found.blazepose33 is None and follower.crops == 2
    assert np.median(np.hypot(*(found.coco17[:, :2] - points).T)) < 3
    x0, y0, x1, y1 = found.box
    (px0, py0), (px1, py1) = points.min(axis=0), points.max(axis=0)
    assert x0 < px0 and y0 < py0 and x1 > px1 and y1 > py1          # every joint inside, with room for the head
    assert found.next_region == found.box
    (nobody,) = follower.find(np.zeros((360, 640, 3), np.uint8), [detector_box])
    assert not nobody.present


def test_box_of_joints_needs_three_confident_joints():
    kp = np.zeros((17, 3))
    kp[:2] = [[10, 10, 0.9], [20, 50, 0.9]]
    assert box_of_joints(kp, (0, 0, 1, 1)) == (0, 0, 1, 1)
    kp[2] = [30, 110, 0.9]
    x0, y0, x1, y1 = box_of_joints(kp, (0, 0, 1, 1))
    assert (x0, x1) == pytest.approx((8, 32)) and y0 == pytest.approx(10 - 0.15 * 100) and y1 == pytest.approx(115)


def test_float_input_is_normalised_channels_first():
    info = HeatmapModelInfo("m", "image", "float32", 192, 256, 17, 48, 64, 8)
    crops = np.full((1, 256, 192, 3), 255, np.uint8)
    x = model_input(info, crops)
    assert x.shape == (1, 3, 256, 192) and x.dtype == np.float32
    assert np.allclose(x[0, :, 0, 0], (1 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225]))
    assert model_input(INFO, crops).dtype == np.uint8


def test_info_from_a_served_config():
    config = {"name": "hrnet_w48_384", "max_batch_size": 32,
              "input": [{"name": "image", "data_type": "TYPE_UINT8", "dims": ["384", "288", "3"]}],
              "output": [{"name": "heatmaps", "data_type": "TYPE_FP32", "dims": ["17", "96", "72"]}]}
    info = HeatmapModelInfo.from_config(config)
    assert (info.width, info.height, info.heatmap_width, info.heatmap_height, info.max_batch_size) == (
        288, 384, 72, 96, 32)
    with pytest.raises(ValueError, match="not a top-down heatmap model"):
        HeatmapModelInfo.from_config({"name": "blazepose_detector", "input": config["input"],
                                      "output": [{"name": "scores", "dims": ["1"]}]})


def test_catalog_refuses_unknown_and_absent_models():
    def factory(name):
        raise LookupError(f"Triton has no ready model {name!r}")
    catalog = PoseModelCatalog(blazepose=None, topdown_factory=factory, ready_models=lambda: set())
    segment = None
    with pytest.raises(InvalidInput, match="unknown pose_model 'vitpose'"):
        catalog.estimate(segment, "vitpose", 2)
    with pytest.raises(WeightsMissing, match="pose_resnet_101_256x192.pth.tar.*hpe3d models export simplebaseline_r101"):
        catalog.estimate(segment, "simplebaseline_r101", 2)
    assert catalog.offered() == []
    blazepose = SimpleNamespace(info=repository_blazepose_info())    # the sizes Triton would report
    ready = PoseModelCatalog(blazepose, lambda name: DotFinder(), lambda: {"person_detector", "blazepose_detector",
                                                                          "blazepose_landmarks", "hrnet_w32"})
    assert [(m.name, m.kind, m.input_width) for m in ready.offered()] == [("blazepose", "landmarks", 256),
                                                                          ("hrnet_w32", "top-down", 192)]
