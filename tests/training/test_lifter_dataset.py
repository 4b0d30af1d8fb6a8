"""Synthetic training samples: cameras, projection, noise, bone scaling, batches, split rule."""
import numpy as np
import pytest

from services.common.skeletons import H36M17
from training import dataset as ds
from services.lifter3d.keypoints2d import fill_low_confidence, normalize_screen, smooth_time


def _standing_person(b: int = 4, t: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """COCO-17 and H36M-17 world joints of a rigid upright figure drifting along x."""
    coco = np.array([
        [0, 1.60, 0.10], [0.03, 1.64, 0.08], [-0.03, 1.64, 0.08], [0.07, 1.62, 0], [-0.07, 1.62, 0],
        [0.18, 1.42, 0], [-0.18, 1.42, 0], [0.22, 1.15, 0], [-0.22, 1.15, 0], [0.24, 0.90, 0.05],
        [-0.24, 0.90, 0.05], [0.10, 0.92, 0], [-0.10, 0.92, 0], [0.10, 0.50, 0.02], [-0.10, 0.50, 0.02],
        [0.10, 0.10, 0], [-0.10, 0.10, 0],
    ])
    h36 = np.zeros((17, 3))
    names = {"right_hip": 12, "right_knee": 14, "right_ankle": 16, "left_hip": 11, "left_knee": 13,
             "left_ankle": 15, "neck_nose": 0, "left_shoulder": 5, "left_elbow": 7, "left_wrist": 9,
             "right_shoulder": 6, "right_elbow": 8, "right_wrist": 10}
    for name, idx in names.items():
        h36[H36M17.index(name)] = coco[idx]
    h36[0] = (coco[11] + coco[12]) / 2
    h36[H36M17.index("spine")] = [0, 1.15, 0]
    h36[H36M17.index("thorax")] = [0, 1.45, 0]
    h36[H36M17.index("head_top")] = [0, 1.78, 0]
    drift = np.zeros((b, t, 1, 3))
    drift[..., 0] = np.linspace(0, 0.5, t)[None, :, None]
    return coco[None, None] + drift, h36[None, None] + drift


def test_projection_round_trip():
    rng = np.random.default_rng(0)
    coco, _ = _standing_person(8)
    cams = ds.sample_cameras(rng, coco)
    for r in cams.R:
        assert np.allclose(r @ r.T, np.eye(3), atol=1e-9) and np.linalg.det(r) == pytest.approx(1.0)
    cam_pts = cams.to_camera(coco)
    assert cam_pts[..., 2].min() >= 1.0 - 1e-9
    pix = cams.project(cam_pts)
    back = cams.unproject(pix, cam_pts[..., 2])
    assert np.allclose(back, cam_pts, atol=1e-9)
    # up in the world is up in the image (y down) within the roll/pitch range
    assert (pix[:, :, 0, 1] < pix[:, :, 15, 1]).all()  # nose above the ankle
    inside = ((pix[..., 0] > 0) & (pix[..., 0] < cams.width[:, None, None])).mean()
    assert inside > 0.8


def test_normalize_screen_matches_gastnet():
    xy = np.array([[0.0, 0.0], [1920.0, 1080.0], [960.0, 540.0]])
    n = normalize_screen(xy, 1920, 1080)
    assert np.allclose(n, [[-1, -1080 / 1920], [1, 1080 / 1920], [0, 0]])


def test_noise_statistics():
    rng = np.random.default_rng(1)
    b, t = 64, 40
    clean = np.tile(np.linspace(100, 500, 17)[None, None, :, None], (b, t, 1, 2))  # static: box height 400 px
    quiet = ds.NoiseConfig(jitter=(0.01, 0.01), bias=0.0, miss_rate=(0.0, 0.0), swap_prob=0.0)
    noisy = ds.add_detector_noise(rng, clean, quiet)
    assert noisy.shape == (b, t, 17, 3)
    err = noisy[..., :2] - clean
    assert err.std() == pytest.approx(4.0, rel=0.1)  # 1 % of 400 px
    assert noisy[..., 2].min() >= 0.55
    # moving joints get more jitter
    moving = clean.copy()
    moving[..., 0] += np.arange(t)[None, :, None] * 40.0
    err_moving = ds.add_detector_noise(rng, moving, quiet)[..., :2] - moving
    assert err_moving.std() > 1.5 * err.std()
    # misses come with low scores and land away from the true joint
    missy = ds.NoiseConfig(jitter=(0.0, 0.0), bias=0.0, miss_rate=(0.2, 0.2), swap_prob=0.0)
    out = ds.add_detector_noise(rng, clean, missy)
    low = out[..., 2] < 0.3
    assert 0.05 < low.mean() < 0.4
    assert np.abs(out[..., :2] - clean)[~low].max() < 1e-6


def test_fill_and_smooth():
    kp = np.zeros((10, 17, 3), dtype=np.float32)
    kp[:, :, 0] = np.arange(10)[:, None] * 2.0
    kp[:, :, 2] = 0.9
    kp[4:6, 3, :2] = 999
    kp[4:6, 3, 2] = 0.1
    filled = fill_low_confidence(kp, 0.3)
    assert np.allclose(filled[:, 3, 0], np.arange(10) * 2.0)
    assert np.allclose(smooth_time(filled, 1.0)[3:-3, :, 0], filled[3:-3, :, 0], atol=1e-4)  # linear stays


def test_bone_scaling_keeps_pelvis_and_scales_bones():
    coco, h36 = _standing_person(2, 3)
    pts = np.concatenate([coco, h36[:, :, [7, 8, 10]]], axis=2)
    scales = {g: np.full(2, 1.1) for g in ds._GROUPS}
    out = ds.scale_bones(pts, scales)
    assert np.allclose((out[:, :, 11] + out[:, :, 12]) / 2, (pts[:, :, 11] + pts[:, :, 12]) / 2)
    assert np.linalg.norm(out[0, 0, 15] - out[0, 0, 13]) == pytest.approx(1.1 * np.linalg.norm(pts[0, 0, 15] - pts[0, 0, 13]))


def test_make_batch_targets_and_flip():
    rng = np.random.default_rng(2)
    coco, h36 = _standing_person(16, 30)
    batch = ds.make_batch(rng, coco, h36, noisy=True, augment=True)
    assert batch.inputs.shape == (16, 30, 17, 2) and batch.targets.shape == (16, 30, 17, 3)
    assert np.allclose(batch.targets[:, :, 0], 0)
    assert np.abs(batch.inputs).max() < 3
    # without augmentation the target is the camera-frame skeleton: bone lengths as in the world
    clean = ds.make_batch(rng, coco, h36, noisy=False, augment=False)
    world_len = np.linalg.norm(h36[0, 0, 2] - h36[0, 0, 3])
    assert np.linalg.norm(clean.targets[:, :, 2] - clean.targets[:, :, 3], axis=-1) == pytest.approx(world_len)
    # the flip permutation mirrors left and right: mirrored target of a mirrored input is consistent
    perm = H36M17.flip_permutation
    assert (perm[perm] == np.arange(17)).all()


def test_validation_rule():
    group = sorted(f"dataset-2_walk_normal_{i:03d}" for i in range(1, 17))
    chosen = [n for n in group if ds.is_validation_take(n, group)]
    assert chosen == ["dataset-2_walk_normal_006", "dataset-2_walk_normal_016"]
    assert ds.take_info("x/dataset-1_walk-left_tired_001.bvh") == ("dataset-1_walk-left_tired_001", "dataset-1", "walk-left")
