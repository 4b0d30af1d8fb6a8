"""The shipped 2D-only lifter: it loads like the supervised file (same class, width and receptive field), is marked
as trained without 3D, and lifts through ``hpe3d lift --weights``."""
import json

import numpy as np
import torch

from hpe3d_cli.cli import main
from services.lifter3d.lift import DEFAULT_WEIGHTS, lift_sequence, load_lifter
from tests.cli.test_adapt_cli import _poses_json

TWO_D_ONLY = DEFAULT_WEIGHTS.with_name("gastnet_2d_only_27f.pt")


def test_the_shipped_2d_only_weights_load_like_the_supervised_ones():
    ckpt = torch.load(TWO_D_ONLY, map_location="cpu", weights_only=True)
    supervised = torch.load(DEFAULT_WEIGHTS, map_location="cpu", weights_only=True)
    assert ckpt["training"] == "2d-only" and ckpt["format"] == "hpe3d-lifter-v1"
    assert ckpt["config"]["channels"] == supervised["config"]["channels"] == 32
    assert ckpt["config"]["filter_widths"] == supervised["config"]["filter_widths"]
    assert {k: v.shape for k, v in ckpt["model"].items()} == {k: v.shape for k, v in supervised["model"].items()}
    model = load_lifter(TWO_D_ONLY)
    assert model.receptive_field() == 27 and not model.training
    kp = np.zeros((30, 17, 3), np.float32)
    kp[..., 2] = 1.0
    kp[..., :2] = np.random.default_rng(0).uniform(400, 600, (30, 17, 2))
    out = lift_sequence(kp, 1280, 720, model)
    assert out.camera.shape == (30, 17, 3) and np.isfinite(out.camera).all()


def test_hpe3d_lift_takes_the_2d_only_weights(tmp_path):
    src, out = tmp_path / "clip.poses.json", tmp_path / "out.json"
    _poses_json(src)
    assert main(["lift", str(src), "-o", str(out), "--weights", str(TWO_D_ONLY)]) == 0
    doc = json.loads(out.read_text())
    assert doc["model"] == TWO_D_ONLY.name
    world = np.array([f["persons"][0]["keypoints_3d_world"] for f in doc["frames"]])
    assert world.shape == (40, 17, 3) and np.isfinite(world).all()
