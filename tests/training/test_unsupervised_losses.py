"""The 2D-only losses on tiny tensors: what a consistent, symmetric, rigid, adult-sized pose scores (about 0) and
what breaks each term (more than 0); the 2D pose prior; the whole objective on a small GAST-Net."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from services.common.skeletons import H36M17
from services.lifter3d.model import build_model
from tests.training.test_lifter_dataset import _standing_person
from training.pose_flow import PoseFlow, canonical_2d, load_flow
from training.unsupervised_losses import (K_PRIOR, LIMB_BONES, LIMB_LENGTH_M, LossWeights, body_up, bone_lengths,
                                          bone_variation, consistency_2d_error, consistency_3d_error, project,
                                          random_rotations, random_turns_about, reprojection_error, rotate,
                                          rotation_matrices,
                                          scale_error, self_supervised_losses, solve_root_translation,
                                          symmetry_error)

FLOW = Path(__file__).resolve().parents[2] / "training" / "weights" / "pose_flow_2d.pt"


def _pose(frames: int = 6) -> torch.Tensor:
    """``[1, F, 17, 3]`` root-relative camera-frame pose (y down) of the synthetic standing figure, arms swinging."""
    _, h36 = _standing_person(b=1, t=frames)
    p = torch.from_numpy(h36[0]).float() * torch.tensor([1.0, -1.0, -1.0])
    swing = 0.15 * torch.sin(torch.linspace(0, math.pi, frames))
    p[:, [13, 16], 2] += swing[:, None]  # wrists forward and back; the forearms change length a little
    return (p - p[:, :1])[None]


def _rigid_pose(frames: int = 6) -> torch.Tensor:
    """The figure turning about its vertical axis: every bone keeps its length."""
    p = _pose(1)[0, 0]
    turn = rotation_matrices(torch.linspace(0, 0.5, frames), torch.zeros(frames))
    return torch.einsum("fij,kj->fki", turn, p)[None]


def test_rotation_helpers_are_proper_rotations_and_invert():
    gen = torch.Generator().manual_seed(0)
    r = random_rotations(5, gen, max_elevation_deg=15)
    assert torch.allclose(r @ r.transpose(-1, -2), torch.eye(3).expand(5, 3, 3), atol=1e-6)
    assert torch.allclose(torch.linalg.det(r), torch.ones(5), atol=1e-6)
    p = _pose().expand(5, -1, -1, -1)
    assert torch.allclose(rotate(rotate(p, r), r.transpose(-1, -2)), p, atol=1e-6)


def test_root_translation_is_recovered_and_the_true_pose_reprojects_exactly():
    p = _pose()
    t = torch.tensor([0.4, -0.2, 5.0])
    uv = project(p + t, K_PRIOR)
    assert torch.allclose(solve_root_translation(p, uv), t.expand(1, 6, 3), atol=1e-4)
    err, _ = reprojection_error(p, uv)
    assert err.item() < 1e-4
    flat = p * torch.tensor([1.0, 1.0, 0.0])  # right outline, no depth: perspective gives it away a little
    wrong = p * torch.tensor([1.0, 1.3, 1.0])  # stretched vertically: clearly off
    assert reprojection_error(flat, uv)[0].item() > 1e-3
    assert reprojection_error(wrong, uv)[0].item() > 0.05


def test_a_rotation_consistent_lift_gives_zero_consistency_and_wrong_lifts_do_not():
    gen = torch.Generator().manual_seed(1)
    p = _pose().expand(4, -1, -1, -1)
    r = random_rotations(4, gen)
    t = torch.tensor([0.1, 0.0, 4.0]).expand(4, 6, 3)
    uv = project(p + t[..., None, :])
    consistent = rotate(p, r)  # what a perfect lifter returns for the rotated view
    assert consistency_3d_error(consistent, rotate(p, r)).item() < 1e-6
    assert consistency_2d_error(consistent, r, t, uv).item() < 1e-5
    # the depth-flipped twin: the 3D term sees it; the 2D term cannot (both project to about the same 2D)
    mirrored = rotate(p * torch.tensor([1.0, 1.0, -1.0]), r)
    assert consistency_3d_error(mirrored, rotate(p, r)).item() > 0.05
    assert consistency_2d_error(mirrored, r, t, uv).item() < 0.02
    # a lifter that ignores the new view and returns the first one: both terms see it
    assert consistency_3d_error(p, rotate(p, r)).item() > 0.05
    assert consistency_2d_error(p, r, t, uv).item() > 0.05


def test_symmetric_bones_score_zero_and_asymmetric_bones_do_not():
    p = _pose()
    assert symmetry_error(p).item() < 1e-6
    longer_left_shin = p.clone()
    ankle, knee = H36M17.index("left_ankle"), H36M17.index("left_knee")
    longer_left_shin[..., ankle, :] += 0.3 * (p[..., ankle, :] - p[..., knee, :])
    assert symmetry_error(longer_left_shin).item() > 0.01


def test_bone_variation_is_zero_for_rigid_motion_and_positive_for_stretching():
    assert bone_variation(_rigid_pose()).item() < 1e-6
    stretched = _rigid_pose().clone()
    stretched[:, :, H36M17.index("right_wrist")] *= torch.linspace(1.0, 1.4, 6)[None, :, None]
    assert bone_variation(stretched).item() > 1e-3  # one bone of 16 changes by up to 40 %


def test_scale_term_holds_the_anthropometric_limb_length():
    assert LIMB_LENGTH_M == pytest.approx(0.35, abs=0.01)
    p = _pose()
    mean_limb = bone_lengths(p)[..., list(LIMB_BONES)].mean()
    adult = p * (LIMB_LENGTH_M / mean_limb)
    assert scale_error(adult).item() < 1e-6
    assert scale_error(adult * 0.8).item() == pytest.approx(0.2, abs=1e-5)


def test_the_flow_gives_a_density_and_the_trained_prior_prefers_a_body_to_a_scramble():
    flow = PoseFlow(layers=2, hidden=16)
    uv = project(_pose() + torch.tensor([0.0, 0.0, 4.0]))
    nll = flow.nll(uv)
    assert nll.shape == (1, 6) and torch.isfinite(nll).all()
    assert canonical_2d(uv).shape == (1, 6, 26)
    if not FLOW.exists():
        pytest.skip(f"{FLOW} not trained here (python -m training.pose_flow --out {FLOW})")
    prior = load_flow(FLOW)
    gen = torch.Generator().manual_seed(2)
    scrambled = uv[..., torch.randperm(17, generator=gen), :]
    assert prior.nll(uv).mean() + 1.0 < prior.nll(scrambled).mean()
    assert not any(p.requires_grad for p in prior.parameters())


def test_the_objective_on_a_small_gastnet_is_finite_and_trains_every_weight():
    torch.manual_seed(0)
    model = build_model({"kind": "gastnet", "channels": 8, "filter_widths": [3, 3, 3], "dropout": 0.0})
    window = 4 + 2 * (model.receptive_field() - 1)
    rng = np.random.default_rng(0)
    t = torch.tensor([0.2, 0.1, 4.0])
    x = project(_rigid_pose(window) + t).expand(2, -1, -1, -1) + torch.from_numpy(
        rng.normal(0, 1e-3, (2, window, 17, 2))).float()
    terms = self_supervised_losses(model, x, torch.Generator().manual_seed(0), LossWeights(),
                                   PoseFlow(layers=2, hidden=16))
    assert set(terms) >= {"total", "reprojection", "consistency_3d", "consistency_2d", "prior", "symmetry",
                          "bone_variation", "scale", "lifted"}
    assert all(torch.isfinite(v).all() for v in terms.values())
    assert terms["lifted"].shape == (2, window - model.receptive_field() + 1, 17, 3)
    terms["total"].backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="too short"):
        self_supervised_losses(model, x[:, :40], torch.Generator(), LossWeights())


def test_n_mpjpe_alignment_forgives_the_size_and_nothing_else():
    from training.evaluate import mpjpe, procrustes_align, scale_align
    gt = _pose()[0].double().numpy()
    assert mpjpe(scale_align(gt * 1.2, gt), gt).max() < 1e-9  # a 2D-only lifter cannot know the size
    turned = gt @ rotation_matrices(torch.tensor(0.3), torch.tensor(0.0)).double().numpy().T * 1.2
    n = mpjpe(scale_align(turned, gt), gt)
    assert (n > 0.01).all()  # a wrong pose stays wrong
    assert (mpjpe(procrustes_align(turned, gt), gt) <= n + 1e-9).all() and (n <= mpjpe(turned, gt) + 1e-9).all()


def test_turns_about_the_body_keep_its_vertical_and_a_tilted_body_stays_tilted():
    p = _pose()
    pitch = rotation_matrices(torch.tensor([0.0]), torch.tensor([0.4]))  # seen from above: the body leans
    tilted = rotate(p, pitch)
    up = body_up(tilted)
    assert torch.allclose(up, body_up(p) @ pitch[0].T, atol=1e-6)
    gen = torch.Generator().manual_seed(3)
    r = random_turns_about(up.expand(4, 3), gen, max_elevation_deg=0.0)
    turned = rotate(tilted.expand(4, -1, -1, -1), r)
    assert torch.allclose(body_up(turned), up.expand(4, 3), atol=1e-5)  # same camera pitch after the turn
    assert torch.allclose(torch.linalg.det(r), torch.ones(4), atol=1e-6)
    assert consistency_3d_error(turned, tilted.expand(4, -1, -1, -1)).item() > 0.05  # it did turn
