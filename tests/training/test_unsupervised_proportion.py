"""The limb-proportion term of the 2D-only losses: a figure of adult proportions scores 0, one whose limbs are
flattened in depth (what a lifter that ignores depth gives) scores more, and the term enters the objective only
with a weight."""
import torch

from services.lifter3d.model import build_model
from training.unsupervised_losses import (LIMB_PROPORTIONS, PROPORTION_TOLERANCE, LossWeights, proportion_error,
                                          rotation_matrices, self_supervised_losses)

from .test_unsupervised_losses import _rigid_pose


def test_adult_proportions_score_zero_and_a_flattened_figure_does_not():
    pose = _rigid_pose(4)
    assert proportion_error(pose) == 0
    kick = rotation_matrices(torch.zeros(1), torch.tensor([1.2]))[0]  # 70 degrees about the camera's x axis
    bent = pose.clone()
    hip = bent[..., 4:5, :]
    bent[..., 5:7, :] = hip + (bent[..., 5:7, :] - hip) @ kick.T  # the left leg raised towards the camera, rigidly
    assert proportion_error(bent) == 0
    flat = bent.clone()
    flat[..., 2] = 0          # the same figure with no depth: the left thigh and shank look short
    assert proportion_error(flat) > 0.01
    assert proportion_error(flat, tolerance=0.0) > proportion_error(flat)


def test_table_and_tolerance():
    # the thigh and the shank are about equal, the forearm shorter than the upper arm
    assert abs(LIMB_PROPORTIONS[0] / LIMB_PROPORTIONS[1] - 1) < 0.01
    assert LIMB_PROPORTIONS[5] < LIMB_PROPORTIONS[4]
    assert abs(sum(LIMB_PROPORTIONS) / len(LIMB_PROPORTIONS) - 1) < 1e-9
    assert 0 < PROPORTION_TOLERANCE < 0.5


def test_the_term_is_only_in_the_objective_with_a_weight():
    torch.manual_seed(0)
    model = build_model({"kind": "gastnet", "channels": 8, "filter_widths": [3], "causal": False, "dropout": 0.0,
                         "depth_only": True, "limb_length_m": 0.35})
    x = torch.randn(2, 12, 17, 2) * 0.1
    without = self_supervised_losses(model, x, torch.Generator().manual_seed(0), LossWeights())
    with_it = self_supervised_losses(model, x, torch.Generator().manual_seed(0), LossWeights(proportion=5.0))
    assert "proportion" not in without and "proportion" in with_it
    assert torch.isclose(with_it["total"], without["total"] + 5.0 * with_it["proportion"])
