"""The real-keypoint check's helpers: the GAST-Net demo JSON reader and the comparison picture."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from training.check_real import load_demo_json, write_comparison

DATA = Path(__file__).resolve().parents[1] / "data"


def test_load_demo_json_keeps_frame_order_and_marks_empty_frames(tmp_path):
    pose = [[float(10 * j), float(j)] for j in range(17)]
    doc = {"data": [{"frame_index": 1, "skeleton": [{"pose": pose, "score": [0.9] * 17, "bbox": [0, 0, 1, 1]}]},
                    {"frame_index": 3, "skeleton": [{"pose": pose, "score": [[0.5]] * 17, "bbox": [0, 0, 1, 1]}]},
                    {"frame_index": 2, "skeleton": []}]}
    path = tmp_path / "demo.json"
    path.write_text(json.dumps(doc))
    kp = load_demo_json(path)
    assert kp.shape == (3, 17, 3)
    assert kp[0, 5, 0] == 50 and kp[0, 5, 1] == 5 and kp[0, 0, 2] == pytest.approx(0.9)
    assert np.all(kp[1] == 0)  # no person: score 0, filled in later
    assert kp[2, 0, 2] == pytest.approx(0.5)


def test_write_comparison_puts_reference_and_3d_side_by_side(tmp_path):
    grounded = np.zeros((24, 17, 3))
    grounded[:, :, 1] = np.linspace(0, 1.7, 17)  # a vertical stick figure standing on y = 0
    out = tmp_path / "cmp.jpg"
    write_comparison(out, DATA / "two_people_office_24f.mp4", grounded, [1, 12])
    image = cv2.imread(str(out))
    assert image.shape == (2 * 360, 640 + 360, 3)
    panel = image[:360, 640:]
    assert panel.std() > 5  # grid and skeleton drawn, not a flat fill


def test_write_comparison_rejects_a_frame_past_the_end(tmp_path):
    with pytest.raises(ValueError, match="no frame 99"):
        write_comparison(tmp_path / "x.jpg", DATA / "two_people_office_24f.mp4", np.zeros((99, 17, 3)), [99])
