"""Inference helpers: loading weights (ours and official format) and lifting a sequence."""
import numpy as np
import pytest
import torch

from services.common.skeletons import H36M17
from services.lifter3d.lift import camera_to_world, ground, lift_sequence, load_lifter
from services.lifter3d.model import GASTNet


def test_missing_weights_error_names_the_file(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError) as err:
        load_lifter(missing)
    msg = str(err.value)
    assert str(missing) in msg
    assert "gastnet_bandai_27f.pt" in msg and "27_frame_model.bin" in msg


def test_load_official_and_own_formats(tmp_path):
    torch.manual_seed(0)
    ref = GASTNet(channels=16, filter_widths=(3, 3, 3)).eval()
    official = tmp_path / "27_frame_model.bin"
    torch.save({"epoch": 80, "model_pos": ref.state_dict()}, official)
    model = load_lifter(official)
    assert isinstance(model, GASTNet) and model.channels == 16 and model.receptive_field() == 27
    x = torch.randn(1, 27, 17, 2)
    assert torch.allclose(model(x), ref(x))
    assert load_lifter(official, causal=True).output_offset() == 26
    ours = tmp_path / "ours.pt"
    torch.save({"model": ref.state_dict(), "config": {"kind": "gastnet", "channels": 16}}, ours)
    assert torch.allclose(load_lifter(ours)(x), ref(x))
    bad = tmp_path / "bad.pt"
    torch.save({"weights": 1}, bad)
    with pytest.raises(ValueError):
        load_lifter(bad)


def _walking_keypoints(frames: int) -> np.ndarray:
    t = np.arange(frames)
    base = np.array([
        [0, -160], [5, -165], [-5, -165], [12, -162], [-12, -162], [30, -140], [-30, -140], [36, -110],
        [-36, -110], [38, -85], [-38, -85], [16, -90], [-16, -90], [16, -48], [-16, -48], [16, -8], [-16, -8],
    ], dtype=np.float32) * 3
    kp = np.zeros((frames, 17, 3), dtype=np.float32)
    kp[:, :, :2] = base[None] + np.array([900, 900], dtype=np.float32)
    kp[:, :, 0] += t[:, None] * 4
    kp[:, 15, 1] += 10 * np.sin(t / 3)
    kp[:, :, 2] = 0.9
    kp[10:13, 9, 2] = 0.05  # a dropped wrist
    kp[10:13, 9, :2] = 0
    return kp


@pytest.mark.parametrize("frames", [5, 40])
def test_lift_sequence_shapes_and_ground(frames):
    torch.manual_seed(0)
    model = GASTNet(channels=8).eval()
    res = lift_sequence(_walking_keypoints(frames), 1920, 1080, model)
    for arr in (res.camera, res.world, res.grounded):
        assert arr.shape == (frames, 17, 3) and np.isfinite(arr).all()
    assert np.allclose(res.camera[:, 0], 0, atol=1e-6)
    ankles = res.grounded[:, [H36M17.index("left_ankle"), H36M17.index("right_ankle")], 1]
    assert np.allclose(ankles.min(axis=1), 0, atol=1e-6)
    if frames > 13:
        assert res.keypoints_2d[11, 9, 0] > 100  # the dropped wrist was filled in from its neighbours


def test_lift_rejects_bad_input():
    model = GASTNet(channels=8).eval()
    with pytest.raises(ValueError):
        lift_sequence(np.zeros((5, 16, 3)), 1920, 1080, model)
    with pytest.raises(ValueError):
        lift_sequence(np.zeros((5, 17, 3)), 0, 1080, model)


def test_camera_to_world_removes_pitch():
    # an upright skeleton in a y-up frame, seen by a camera pitched 20 deg down
    world = np.zeros((3, 17, 3))
    world[:, H36M17.index("thorax"), 1] = 0.5
    world[:, H36M17.index("head_top"), 1] = 0.75
    world[:, H36M17.index("left_ankle")] = [0.1, -0.8, 0.0]
    world[:, H36M17.index("right_ankle")] = [-0.1, -0.8, 0.0]
    a = np.deg2rad(20)
    # camera frame: x right, y down, z forward; looking down by a: world up -> (0, -cos a, -sin a)
    up_cam = np.array([0, -np.cos(a), -np.sin(a)])
    fwd_cam = np.array([0, -np.sin(a), np.cos(a)])  # world "away from camera" direction (horizontal)
    basis = np.stack([[1, 0, 0], up_cam, -fwd_cam])  # world x, y, z (z towards camera) in camera coords
    cam = world @ basis
    out, pitch = camera_to_world(cam)
    assert pitch == pytest.approx(20, abs=1e-6)
    assert np.allclose(out, world, atol=1e-9)
    grounded = ground(out, "sequence")
    assert grounded[..., 1].min() == pytest.approx(0)


def test_fix_bone_lengths_makes_bones_constant():
    from services.lifter3d.lift import fix_bone_lengths

    rng = np.random.default_rng(0)
    poses = rng.normal(size=(20, 17, 3)) * 0.3
    poses -= poses[:, :1]
    fixed = fix_bone_lengths(poses)
    for a, b in H36M17.bones:
        length = np.linalg.norm(fixed[:, a] - fixed[:, b], axis=-1)
        assert np.ptp(length) < 1e-9
        direction = (fixed[:, b] - fixed[:, a]) / length[:, None]
        raw = poses[:, b] - poses[:, a]
        assert np.allclose(direction, raw / np.linalg.norm(raw, axis=-1, keepdims=True))


def test_half_precision_export_loads(tmp_path):
    from training.export import export

    torch.manual_seed(0)
    ref = GASTNet(channels=8).eval()
    full = tmp_path / "full.pt"
    torch.save({"model": ref.state_dict(), "config": {"kind": "gastnet", "channels": 8}}, full)
    export(str(full), str(tmp_path / "half.pt"), half=True)
    model = load_lifter(tmp_path / "half.pt")
    assert next(model.parameters()).dtype == torch.float32
    x = torch.randn(1, 27, 17, 2)
    assert torch.allclose(model(x), ref(x), atol=5e-3)
