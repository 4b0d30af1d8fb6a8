"""The person detector's plain functions (services/pose2d/person_detector.py): reading the model's
config, decoding NanoDet's distribution bins, suppression, windows and tiles, and the letterbox
round trip (a fake model that "sees" a known box). The served model itself: tests/contract/test_person_detector.py."""
import math

import numpy as np
import pytest
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from services.pose2d import person_detector as pd
from services.triton.repositories import REPOSITORY_DIR

GPU_REPOSITORY = REPOSITORY_DIR.parent / "repository_gpu"


def config_json(repository=REPOSITORY_DIR) -> dict:
    text = (repository / "person_detector" / "config.pbtxt").read_text()
    return json_format.MessageToDict(text_format.Parse(text, model_config_pb2.ModelConfig()),
                                     preserving_proto_field_name=True)


@pytest.fixture(scope="module")
def info() -> pd.DetectorInfo:
    return pd.DetectorInfo.from_config(config_json())


def test_info_from_the_repository_config(info):
    assert (info.name, info.input_name, info.width, info.height) == ("person_detector", "image", 416, 416)
    assert info.strides == (8, 16, 32) and info.cells == 52 * 52 + 26 * 26 + 13 * 13 and info.bins == 11
    assert [(lv.rows, lv.cols) for lv in info.levels] == [(52, 52), (26, 26), (13, 13)]
    assert [(lv.scores_name, lv.bins_name) for lv in info.levels] == [
        (f"person_scores_stride{s}", f"box_bins_stride{s}") for s in (8, 16, 32)]
    assert info.max_batch_size == 16


def test_gpu_repository_serves_the_same_tensors_on_the_gpu():
    cpu, gpu = config_json(), config_json(GPU_REPOSITORY)
    assert pd.DetectorInfo.from_config(gpu) == pd.DetectorInfo.from_config(cpu)
    assert gpu["platform"] == cpu["platform"] == "onnxruntime_onnx"
    assert [g["kind"] for g in gpu["instance_group"]] == ["KIND_GPU"]
    assert [g["kind"] for g in cpu["instance_group"]] == ["KIND_CPU"]
    link = GPU_REPOSITORY / "person_detector" / "1" / "model.onnx"
    assert link.is_symlink() and link.resolve() == (REPOSITORY_DIR / "person_detector" / "1" / "model.onnx").resolve()


@pytest.mark.parametrize("change, message", [
    (lambda c: c["input"][0].update(data_type="TYPE_FP32"), "not UINT8"),
    (lambda c: c["output"].pop(), "pairs of \\[cells\\] score"),
    (lambda c: c["output"][1].update(dims=["2704", "45"]), "4 x bins"),
    (lambda c: c["output"][3].update(dims=["676", "40"]), "the same for all"),
    (lambda c: [o.update(dims=["2705", *o["dims"][1:]]) for o in c["output"][:2]], "no grid of a 416x416 input"),
])
def test_configs_that_do_not_fit_are_refused(change, message):
    config = config_json()
    change(config)
    with pytest.raises(ValueError, match=message):
        pd.DetectorInfo.from_config(config)


def test_bin_distances_are_the_expectation_of_the_softmax():
    one_hot = np.full((1, 4, 11), -30.0)
    for side, k in enumerate((0, 3, 7, 10)):
        one_hot[0, side, k] = 30.0
    assert np.allclose(pd.bin_distances(one_hot.reshape(1, 44), 11), [[0, 3, 7, 10]], atol=1e-6)
    assert np.allclose(pd.bin_distances(np.zeros((2, 44)), 11), 5.0)       # uniform: the middle bin
    two = np.full((1, 4, 11), -30.0)
    two[0, :, 2] = two[0, :, 4] = 0.0                                         # half on 2, half on 4
    assert np.allclose(pd.bin_distances(two.reshape(1, 44), 11), 3.0, atol=1e-6)


def cell_index(info, stride, row, col):
    offset = 0
    for s in info.strides:
        if s == stride:
            return offset + row * math.ceil(info.width / s) + col
        offset += math.ceil(info.height / s) * math.ceil(info.width / s)
    raise AssertionError(stride)


def test_per_level_outputs_are_joined_finest_first(info):
    outputs = {}
    for k, lv in enumerate(info.levels):
        outputs[lv.scores_name] = np.full((2, lv.rows * lv.cols), k, np.float32)
        outputs[lv.bins_name] = np.full((2, lv.rows * lv.cols, 4 * info.bins), k, np.float32)
    scores, bins = pd.levels_joined(info, outputs)
    assert scores.shape == (2, info.cells) and bins.shape == (2, info.cells, 44)
    assert scores[0, 0] == 0 and scores[0, 2704] == 1 and scores[0, -1] == 2 and bins[1, 2704 + 676, 0] == 2


def outputs_with(info, cells: dict[int, tuple[float, tuple[int, int, int, int]]]):
    """Scores and bins where each given cell has a score and one-hot distances (in bins)."""
    scores = np.zeros(info.cells, np.float32)
    bins = np.full((info.cells, 4, info.bins), -30.0, np.float32)
    for cell, (score, sides) in cells.items():
        scores[cell] = score
        for side, k in enumerate(sides):
            bins[cell, side, k] = 30.0
    return scores, bins.reshape(info.cells, 4 * info.bins)


def test_decode_places_a_box_around_its_cell_centre(info):
    cell = cell_index(info, 16, row=10, col=5)              # centre (5.5 * 16, 10.5 * 16) = (88, 168)
    scores, bins = outputs_with(info, {cell: (0.9, (2, 3, 4, 5))})
    boxes, kept = pd.decode(scores, bins, info, min_score=0.5)
    assert np.allclose(boxes, [[88 - 32, 168 - 48, 88 + 64, 168 + 80]], atol=1e-3)
    assert np.allclose(kept, [0.9])
    boxes, _ = pd.decode(scores, bins, info, min_score=0.95)
    assert boxes.shape == (0, 4)
    with pytest.raises(ValueError, match="are not"):
        pd.decode(scores[:-1], bins, info)


def test_suppression_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 100, 200], [5, 5, 105, 205], [300, 0, 400, 200], [0, 0, 50, 100]], np.float32)
    scores = np.array([0.6, 0.8, 0.5, 0.7], np.float32)
    assert pd.suppress(boxes, scores, 0.6).tolist() == [1, 3, 2]       # box 0 is box 1 again (IoU 0.9)
    assert pd.suppress(boxes, scores, 0.95).tolist() == [1, 3, 0, 2]


def test_whole_frame_only_without_tiles():
    assert pd.windows(1920, 1080) == [pd.Window(0, 0, 1920, 1080, 1920, 1080)]


@pytest.mark.parametrize("size", [(1920, 1080), (1080, 1920), (640, 640), (1280, 720)])
def test_tiles_cover_the_frame_and_hold_a_person_up_to_their_side(size):
    width, height = size
    wins = pd.windows(width, height, tiles=True)
    tiles = wins[1:]
    side = round(pd.TILE_SIDE * min(width, height))
    assert tiles and all(t.width == t.height == side for t in tiles)
    covered = np.zeros((height, width), bool)
    for t in tiles:
        assert 0 <= t.x and t.x + t.width <= width and 0 <= t.y and t.y + t.height <= height
        covered[t.y:t.y + t.height, t.x:t.x + t.width] = True
    assert covered.all()
    xs, ys = sorted({t.x for t in tiles}), sorted({t.y for t in tiles})
    for starts in (xs, ys):
        for a, b in zip(starts, starts[1:]):
            assert side - (b - a) >= pd.TILE_MIN_OVERLAP * side - 1      # neighbours overlap enough
    # a person 1/8 of the frame tall anywhere is whole in some tile
    person = height / 8
    for top in np.linspace(0, height - person, 9):
        for left in np.linspace(0, width - person / 3, 9):
            assert any(t.x <= left and left + person / 3 <= t.x + t.width and t.y <= top
                       and top + person <= t.y + t.height for t in tiles)


def test_a_box_cut_by_an_inner_tile_edge_is_dropped():
    tile = pd.Window(600, 0, 720, 720, 1920, 1080)          # left, right and bottom edges are inside the frame
    boxes = np.array([[601, 10, 700, 300], [700, 0, 800, 300], [1000, 400, 1319, 700], [900, 500, 1000, 719]],
                     np.float32)
    assert pd.cut_by_inner_edge(boxes, tile).tolist() == [True, False, True, True]


class FakeDetector:
    """Sees one person wherever the letterboxed frame shows the marked box (unit test only)."""

    def __init__(self, info, score=0.9):
        self.info = info
        self.score = score
        self.batches = []

    def infer(self, images):
        self.batches.append(len(images))
        scores = np.zeros((len(images), self.info.cells), np.float32)
        bins = np.full((len(images), self.info.cells, 4 * self.info.bins), -30.0, np.float32)
        for i, image in enumerate(images):
            ys, xs = np.nonzero(image[..., 1] > 200)          # the green box
            if not len(xs):
                continue
            x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            stride = 32
            col, row = int(cx // stride), int(cy // stride)
            cell = cell_index(self.info, stride, row, col)
            centre = ((col + 0.5) * stride, (row + 0.5) * stride)
            sides = np.array([centre[0] - x0, centre[1] - y0, x1 - centre[0], y1 - centre[1]]) / stride
            scores[i, cell] = self.score
            b = bins[i, cell].reshape(4, self.info.bins)
            for side, d in enumerate(sides):                   # two bins around d give expectation d
                lo = int(np.floor(d))
                frac = d - lo
                b[side, lo] = np.log(max(1 - frac, 1e-12))
                if lo + 1 < self.info.bins:
                    b[side, lo + 1] = np.log(max(frac, 1e-12))
        return scores, bins


def test_boxes_come_back_in_frame_pixels_through_the_letterbox(info):
    frame = np.zeros((540, 960, 3), np.uint8)
    frame[100:400, 300:420] = (0, 255, 0)
    model = FakeDetector(info)
    (people,) = pd.detect_persons([frame], model, min_score=0.5)
    assert len(people) == 1
    assert np.allclose(people[0].box, (300, 100, 420, 400), atol=3)
    assert people[0].score == pytest.approx(0.9)


def test_frames_and_tiles_go_in_batches_of_the_model_limit(info):
    frames = [np.zeros((360, 640, 3), np.uint8) for _ in range(5)]
    frames[3][50:300, 100:160] = (0, 255, 0)
    model = FakeDetector(info)
    people = pd.detect_persons(frames, model, tiles=True)
    per_frame = len(pd.windows(640, 360, tiles=True))
    assert sum(model.batches) == 5 * per_frame and max(model.batches) <= info.max_batch_size
    assert [len(p) for p in people] == [0, 0, 0, 1, 0]            # whole frame and tile boxes merged
    assert np.allclose(people[3][0].box, (100, 50, 160, 300), atol=3)


def test_frames_that_are_not_bgr_bytes_are_refused(info):
    with pytest.raises(ValueError, match="BGR uint8"):
        pd.detect_persons([np.zeros((10, 10), np.uint8)], FakeDetector(info))


def test_the_host_names_the_set_up_step_when_the_model_file_is_missing(tmp_path):
    import shutil

    from services.triton.host import ModelUnservable, load_model

    folder = tmp_path / "person_detector"
    folder.mkdir()
    shutil.copy(REPOSITORY_DIR / "person_detector" / "config.pbtxt", folder / "config.pbtxt")
    with pytest.raises(ModelUnservable, match=r"person_detector/1/model\.onnx is missing: run `make detector`"):
        load_model(folder)
