import numpy as np

from training.placement import PlacementRange, detector_placement


def _pose() -> np.ndarray:
    p = np.zeros((1, 2, 17, 3))
    p[..., 5, :] = [0.10, 1.40, 0.0]   # left shoulder
    p[..., 6, :] = [-0.10, 1.40, 0.0]  # right shoulder
    p[..., 11, :] = [0.065, 1.0, 0.0]  # left hip
    p[..., 12, :] = [-0.065, 1.0, 0.0]
    p[..., 0, :] = [0.0, 1.6, 0.1]     # nose
    return p


def test_fixed_factors_move_shoulders_and_hips_only():
    rng = np.random.default_rng(0)
    ranges = PlacementRange(shoulder_widen=(1.5, 1.5), shoulder_raise=(0.1, 0.1), hip_widen=(1.2, 1.2))
    pose = _pose()
    out = detector_placement(rng, pose, ranges)
    assert np.allclose(out[..., 5, :], [0.15, 1.44, 0.0])
    assert np.allclose(out[..., 6, :], [-0.15, 1.44, 0.0])
    assert np.allclose(out[..., 11, 0], 0.078) and np.allclose(out[..., 12, 0], -0.078)
    untouched = [j for j in range(17) if j not in (5, 6, 11, 12)]
    assert np.array_equal(out[..., untouched, :], pose[..., untouched, :])
    assert np.array_equal(pose, _pose())  # input not modified


def test_factors_are_drawn_per_sample_and_held_over_time():
    rng = np.random.default_rng(1)
    poses = np.repeat(_pose(), 50, axis=0)
    out = detector_placement(rng, poses)
    width = out[:, :, 5, 0] - out[:, :, 6, 0]
    assert np.allclose(width[:, 0], width[:, 1])
    assert width.min() >= 0.2 * 1.2 - 1e-9 and width.max() <= 0.2 * 1.5 + 1e-9
    assert width.std() > 0.01
