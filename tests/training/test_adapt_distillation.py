"""The adaptation's distillation term: on joints it holds the starting network's proportions too; on bone
directions it lets the bones' lengths follow the user's 2D and holds only where each bone points."""
import math

import pytest
import torch

from services.common.skeletons import H36M17
from tests.training.test_unsupervised_losses import _pose
from training.adapt import bone_directions, distillation
from training.unsupervised_losses import LIMB_LENGTH_M, axis_rotations, bone_lengths


def _with_wider_hips_and_shoulders(p: torch.Tensor, factor: float) -> torch.Tensor:
    """The pose with the pelvis-hip and thorax-shoulder bones ``factor`` times longer, every bone's direction
    kept (each hip's and shoulder's subtree moves along with it)."""
    out = p.clone()
    h = H36M17.index
    for side in ("left", "right"):
        for root, joint, chain in (("pelvis", "hip", ("hip", "knee", "ankle")),
                                   ("thorax", "shoulder", ("shoulder", "elbow", "wrist"))):
            shift = (factor - 1) * (p[..., h(f"{side}_{joint}"), :] - p[..., h(root), :])
            for j in chain:
                out[..., h(f"{side}_{j}"), :] = p[..., h(f"{side}_{j}"), :] + shift
    return out


def test_bone_directions_are_unit_vectors_along_every_bone():
    p = _pose(3)
    d = bone_directions(p)
    assert d.shape == (1, 3, 16, 3)
    assert torch.allclose(torch.linalg.vector_norm(d, dim=-1), torch.ones(1, 3, 16), atol=1e-5)
    a, b = H36M17.bones[1]
    v = p[0, 0, b] - p[0, 0, a]
    assert torch.allclose(d[0, 0, 1], v / v.norm(), atol=1e-6)


def test_other_proportions_cost_nothing_on_bone_directions_and_something_on_joints():
    teacher = _pose(4)
    wider = _with_wider_hips_and_shoulders(teacher, 1.4)
    assert not torch.allclose(bone_lengths(wider), bone_lengths(teacher))
    assert distillation(wider, teacher, LIMB_LENGTH_M, "bone_directions") < 1e-5
    assert distillation(wider, teacher, LIMB_LENGTH_M, "joints") > 0.05
    assert distillation(teacher, teacher, LIMB_LENGTH_M, "joints") == 0


def test_a_limb_pointing_elsewhere_costs_on_bone_directions():
    teacher = _pose(4)
    bent = teacher.clone()
    h = H36M17.index
    elbow, wrist = h("left_elbow"), h("left_wrist")
    forearm = teacher[0, :, wrist] - teacher[0, :, elbow]  # [F, 3]
    axis = torch.linalg.cross(forearm, torch.tensor([1.0, 0.0, 0.0]).expand_as(forearm))  # across the forearm
    turned = torch.einsum("fij,fj->fi", axis_rotations(axis, torch.full((len(axis),), math.radians(60))), forearm)
    bent[0, :, wrist] = teacher[0, :, elbow] + turned
    # one bone of 16 turned by 60 degrees: |u - v| = 2 sin(30 deg) = 1 for it, 0 for the others
    assert distillation(bent, teacher, LIMB_LENGTH_M, "bone_directions") == pytest.approx(1 / 16, rel=1e-3)


def test_an_unknown_distillation_target_is_refused():
    with pytest.raises(ValueError, match="distill_on"):
        distillation(_pose(1), _pose(1), LIMB_LENGTH_M, "angles")
