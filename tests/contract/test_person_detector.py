"""The person detector through the real Triton host (PyTriton serving services/triton/repository,
ONNX Runtime on the CPU): the model config the server reports, every annotated person of a real
photo found with a box matching the annotation, batches answering as single frames, and an empty
frame holding nobody."""
import json

import cv2
import numpy as np
import pytest
from google.protobuf import json_format

from services.triton.model_config import read_config
from services.pose2d.person_detector import DetectorInfo, TritonPersonDetector, box_iou_matrix, detect_persons
from services.triton.repositories import REPOSITORY_DIR
from tests.conftest import TEST_DATA

PHOTO = TEST_DATA / "aic_three_persons.jpg"


@pytest.fixture(scope="module")
def detector(triton_stack):
    client = TritonPersonDetector(triton_stack.settings.triton_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def annotated():
    meta = json.loads((TEST_DATA / "aic_three_persons.json").read_text())
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in meta["person_boxes_xywh"]], np.float32)
    frame = cv2.imread(str(TEST_DATA / meta["image"]))
    assert frame.shape[:2] == (meta["height"], meta["width"])
    return frame, boxes


def test_the_server_reports_the_repository_config(detector):
    config = read_config(REPOSITORY_DIR / "person_detector" / "config.pbtxt")
    as_json = json_format.MessageToDict(config, preserving_proto_field_name=True)
    assert detector.info == DetectorInfo.from_config(as_json)


@pytest.mark.parametrize("tiles", [False, True], ids=["frame", "tiles"])
def test_every_annotated_person_is_found(detector, annotated, tiles):
    frame, truth = annotated
    (people,) = detect_persons([frame], detector, tiles=tiles)
    found = np.array([p.box for p in people], np.float32).reshape(-1, 4)
    ious = box_iou_matrix(truth, found)
    best = ious.max(axis=1) if len(found) else np.zeros(len(truth))
    assert (best >= 0.6).all(), f"best IoU per annotated person {best.round(2).tolist()}, found {found.round()}"
    # each annotated person matched by a different box, and that box scores as a person
    assert len(set(ious.argmax(axis=1).tolist())) == len(truth)
    assert all(people[j].score >= 0.5 for j in ious.argmax(axis=1))


def test_a_batch_answers_as_single_frames(detector, annotated):
    frame, _ = annotated
    frames = [frame, np.ascontiguousarray(frame[:, ::-1]), frame]
    together = detect_persons(frames, detector)
    alone = [detect_persons([f], detector)[0] for f in frames]
    for a, b in zip(together, alone):
        assert len(a) == len(b)
        assert np.allclose([p.box for p in a], [p.box for p in b], atol=1e-2)
        assert np.allclose([p.score for p in a], [p.score for p in b], atol=1e-5)
    # the mirrored photo holds the same people, mirrored
    width = frame.shape[1]
    mirrored = np.array([[width - p.box[2], p.box[1], width - p.box[0], p.box[3]] for p in together[1]])
    original = np.array([p.box for p in together[0]])
    assert box_iou_matrix(original[:3], mirrored).max(axis=1).min() > 0.8


def test_a_frame_with_nobody_gives_no_box(detector):
    assert detect_persons([np.zeros((480, 640, 3), np.uint8)], detector, tiles=True) == [[]]
