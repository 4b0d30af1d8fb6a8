"""Root-motion and single-frame evaluation: metrics, the static camera, and one take through the service path."""
import numpy as np
import pytest
import torch

from services.common.skeletons import COCO17, H36M17
from services.lifter3d.model import build_model
from services.lifter3d.video_lift import load_service_lifter
from training import evaluate_motion as em
from training import evaluate_single_frame as esf
from tests.training.test_lifter_train import _tiny_mocap
from tests.unit.test_lifter_world import walker


def test_similarity_align_undoes_rotation_scale_and_shift():
    rng = np.random.default_rng(1)
    gt = rng.normal(size=(50, 3))
    a = 1.1
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    pred = 0.7 * gt @ rot.T + np.array([3.0, 0.2, -1.0])
    assert np.abs(em.similarity_align(pred, gt) - gt).max() < 1e-9
    still = np.zeros((50, 3))
    assert np.allclose(em.similarity_align(still, gt), gt.mean(axis=0))


def test_rte_of_a_pinned_root_on_a_straight_walk_is_a_quarter_and_sliding_is_measured():
    frames = 201
    gt = np.zeros((frames, 17, 3))
    gt[:, :, 0] = np.linspace(0, 10, frames)[:, None]  # 10 m straight, evenly
    gt[:, :, 1] = 1.0
    left = H36M17.index("left_ankle")
    gt[:, left] = [5.0, 0.1, 0.0]  # the left foot stays planted the whole take
    pinned = gt.copy()
    pinned[:, :, 0] -= gt[:, :1, 0]  # everybody at x = 0
    scores = em.take_scores(pinned, None, gt, 30.0)
    assert scores["travel"] == pytest.approx(10.0)
    assert scores["rte"] == pytest.approx(0.25, abs=0.005)
    assert em.take_scores(gt, None, gt, 30.0)["rte"] < 1e-9
    # the pinned output drags the planted foot along at 5 cm per frame
    assert scores["slide_n"] == frames - 1
    assert scores["slide_sum"] / scores["slide_n"] == pytest.approx(0.05)
    contacts = np.zeros((frames, 2))
    contacts[:, 0] = 1
    with_contacts = em.take_scores(gt, contacts, gt, 30.0)
    assert with_contacts["tp"] == frames and with_contacts["fp"] == 0


def test_static_camera_keeps_the_whole_take_in_view():
    world, _ = walker(120, start=(-3.0, 2.0), heading=0.3)
    cam = em.static_camera(np.random.default_rng(3), world)
    pix = cam.project(cam.to_camera(world.reshape(1, -1, 3)))[0]
    assert np.all(np.abs(pix[:, 0] - em.WIDTH / 2) <= 0.9 * em.WIDTH / 2)
    assert np.all(np.abs(pix[:, 1] - em.HEIGHT / 2) <= 0.9 * em.HEIGHT / 2)
    assert cam.center[0, 1] == pytest.approx(np.clip(cam.center[0, 1], 1.0, 2.0))


def _coco_from_h36m(h36: np.ndarray) -> np.ndarray:
    """COCO-17 joints of the synthetic walker: shared joints copied, face points around the head."""
    out = np.zeros(h36.shape[:1] + (17, 3))
    for i, joint in enumerate(COCO17.joints):
        if joint in H36M17.joints:
            out[:, i] = h36[:, H36M17.index(joint)]
        else:
            out[:, i] = h36[:, H36M17.index("neck_nose")] + (0.05 if "left" in joint else -0.05) * np.array(
                [0.0, 0.0, 1.0]) * ("eye" in joint or "ear" in joint)
    return out


def test_a_take_through_the_service_path_beats_the_pinned_baseline():
    h36, _ = walker(90, start=(-1.5, 0.0))
    result = em.evaluate_take(load_service_lifter(), _coco_from_h36m(h36), h36, 30.0, seed=5, take=0, noisy=False)
    assert result["tracks"] == 1
    assert result["pinned"]["rte"] > 0.15  # only its per-frame bobbing up and down is left to align
    assert result["service"]["rte"] < 0.05
    assert result["service"]["slide_sum"] < result["pinned"]["slide_sum"]
    assert result["service"]["pitch_err"] < 5


def test_single_frame_evaluation_scores_every_sampled_frame_for_each_model():
    torch.manual_seed(0)
    data = _tiny_mocap()
    coco, h36m = esf.single_frames(data, stride=6)
    assert coco.shape == (10, 1, 17, 3)  # the validation take's 60 frames, every 6th
    models = {"gast": build_model({"kind": "gastnet", "channels": 8, "filter_widths": [3, 3], "dropout": 0.0}),
              "mlp": build_model({"kind": "baseline", "hidden": 32, "blocks": 1, "dropout": 0.0})}
    for m in models.values():
        m.eval()
    first = esf.evaluate(models, coco, h36m, seed=1, noisy=True)
    assert set(first) == {"gast", "mlp"} and all(r["frames"] == 10 for r in first.values())
    assert first == esf.evaluate(models, coco, h36m, seed=1, noisy=True)
    assert all(r["p_mpjpe"] <= r["mpjpe"] for r in first.values())
