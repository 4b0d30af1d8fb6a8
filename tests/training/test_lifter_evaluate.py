"""Validation metrics: Procrustes alignment, MPJPE, and the per-clip evaluation loop."""
import numpy as np
import pytest
import torch

from training import evaluate as ev
from services.lifter3d.model import build_model
from tests.training.test_lifter_train import _tiny_mocap


def test_procrustes_undoes_a_similarity_transform():
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(5, 17, 3))
    angle = 0.7
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    pred = 1.3 * gt @ rot.T + np.array([0.2, -0.1, 0.5])
    assert ev.mpjpe(pred, gt).min() > 0.1
    assert ev.mpjpe(ev.procrustes_align(pred, gt), gt).max() < 1e-9


def test_mpjpe_is_the_mean_joint_distance():
    gt = np.zeros((2, 17, 3))
    pred = gt.copy()
    pred[0, :, 0] = 0.03  # every joint 3 cm off in frame 0
    assert ev.mpjpe(pred, gt) == pytest.approx([0.03, 0.0])


def test_evaluate_counts_every_validation_frame_once_and_is_reproducible():
    torch.manual_seed(0)
    data = _tiny_mocap()
    model = build_model({"kind": "gastnet", "channels": 8, "filter_widths": [3, 3, 3], "dropout": 0.0})
    first = ev.evaluate(model, data, noisy=True, clip=25)
    again = ev.evaluate(model, data, noisy=True, clip=25)
    assert first["overall"]["frames"] == 60  # the one validation take, cut into 25 + 25 + 10 frames
    assert first["overall"]["mpjpe"] == again["overall"]["mpjpe"]
    assert first["overall"]["p_mpjpe"] <= first["overall"]["mpjpe"]
    assert list(first["per_action"]) == ["d/swing"]
    fixed = ev.evaluate(model, data, noisy=True, clip=25, fix_bones=True)
    assert fixed["overall"]["frames"] == 60
    assert fixed["overall"]["mpjpe"] != first["overall"]["mpjpe"]
