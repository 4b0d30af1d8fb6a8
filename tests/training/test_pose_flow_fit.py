"""Fitting the 2D pose prior to a user's own 2D: after a few steps the flow prefers the user's poses more than
before, the original is untouched, and the same inputs give the same flow."""
from pathlib import Path

import torch

from tests.training.test_unsupervised_losses import _pose
from training.pose_flow import fit_to_poses, load_flow
from training.unsupervised_losses import project

FLOW = Path(__file__).resolve().parents[2] / "training" / "weights" / "pose_flow_2d.pt"


def _user_2d() -> torch.Tensor:
    """2D of a figure with shoulders twice as wide as usual (an unusual proportion), seen from the front."""
    p = _pose(20)[0].clone()
    p[:, 11:, 0] *= 2.0  # left arm joints (11-13) and right arm joints (14-16) pushed out sideways
    return project(p + torch.tensor([0.0, 0.0, 4.0]))


def test_the_fitted_prior_prefers_the_users_2d_and_leaves_the_original_alone():
    flow = load_flow(FLOW)
    before = {k: v.clone() for k, v in flow.state_dict().items()}
    poses = _user_2d()
    fitted = fit_to_poses(flow, poses, steps=30, batch=64, lr=1e-3, seed=0)
    assert fitted.nll(poses).mean() < flow.nll(poses).mean() - 0.1
    assert all(torch.equal(before[k], v) for k, v in flow.state_dict().items())
    assert not any(p.requires_grad for p in fitted.parameters())
    again = fit_to_poses(flow, poses, steps=30, batch=64, lr=1e-3, seed=0)
    assert torch.equal(fitted.nll(poses), again.nll(poses))
