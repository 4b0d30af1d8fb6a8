"""The mean limb length ``training.cmu_poses`` prints for ``hpe3d adapt --limb-length-m``."""
import numpy as np
import pytest

from services.common.skeletons import H36M17
from services.lifter3d.model import LIMB_BONES
from training.cmu_poses import mean_limb_length_m


def test_the_mean_of_the_eight_limb_bones_over_all_frames():
    rng = np.random.default_rng(0)
    poses = rng.normal(size=(5, 17, 3))
    expected = np.mean([[np.linalg.norm(p[H36M17.bones[b][1]] - p[H36M17.bones[b][0]]) for b in LIMB_BONES]
                        for p in poses])
    assert mean_limb_length_m(poses) == pytest.approx(expected)
    assert mean_limb_length_m(poses * 2) == pytest.approx(2 * expected)
    assert len(LIMB_BONES) == 8
