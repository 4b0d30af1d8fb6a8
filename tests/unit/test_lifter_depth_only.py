"""The depth-only GAST-Net (services/lifter3d/model.py, ``depth_only``): x and y come from the 2D input, the
network gives only depth, and the output has the configured limb length."""
from __future__ import annotations

import pytest
import torch

from services.common.skeletons import H36M17
from services.lifter3d.model import LIMB_BONES, build_model, centre_and_scale_2d

CONFIG = {"kind": "gastnet", "channels": 32, "filter_widths": [3, 3, 3], "causal": False, "dropout": 0.0,
          "depth_only": True, "limb_length_m": 0.35}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model(CONFIG)
    with torch.no_grad():  # a network whose depths are not all alike
        m.shrink.weight.normal_(0, 0.5)
    return m.eval()


def _pose_2d(frames: int = 30) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    base = torch.randn(1, 1, 17, 2, generator=g) * 0.1
    wobble = torch.randn(1, frames, 17, 2, generator=g) * 0.005
    return base + wobble + torch.tensor([0.2, -0.1])


def test_x_and_y_are_the_inputs_and_the_limbs_have_the_set_length(model):
    x = _pose_2d()
    out = model(x)
    assert out.shape == (1, 30 - 27 + 1, 17, 3)
    off = model.output_offset()
    centred, _ = centre_and_scale_2d(x[:, off:off + out.shape[1]])
    scale = (out[..., :2] * centred).sum((-1, -2)) / centred.square().sum((-1, -2))
    assert torch.allclose(out[..., :2], scale[..., None, None] * centred, atol=1e-6)  # weak perspective
    assert torch.allclose(out[:, :, 0], torch.zeros(3))  # root at the origin
    parents, children = zip(*(H36M17.bones[i] for i in LIMB_BONES))
    limbs = torch.linalg.vector_norm(out[..., list(children), :] - out[..., list(parents), :], dim=-1).mean(-1)
    assert torch.allclose(limbs, torch.full_like(limbs, 0.35), atol=1e-5)
    assert out[..., 2].abs().max() > 0.01  # the network's depths are used


def test_the_output_ignores_where_and_how_large_the_person_is_in_the_frame(model):
    x = _pose_2d()
    moved = (x - x[..., :1, :]) * 2.5 + torch.tensor([-0.4, 0.3])
    assert torch.allclose(model(x), model(moved), atol=1e-5)


def test_a_depth_only_network_needs_its_size():
    with pytest.raises(ValueError, match="limb_length_m"):
        build_model({**CONFIG, "limb_length_m": None})
