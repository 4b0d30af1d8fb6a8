"""The training command on a tiny synthetic motion set: logs, best/last files, snapshots, resume, bone loss."""
import json

import numpy as np
import torch

from services.common.skeletons import H36M17_PARENTS
from training import train
from training.dataset import MocapData
from services.lifter3d.lift import load_lifter
from tests.training.test_lifter_dataset import _standing_person


def _tiny_mocap() -> MocapData:
    """Four 60-frame takes of a drifting figure whose arms swing; take 1 is the validation take."""
    coco, h36 = _standing_person(b=1, t=60)
    takes_coco, takes_h36 = [], []
    for k in range(4):
        swing = 0.1 * np.sin(np.linspace(0, 2 * np.pi, 60) + k)[:, None]
        c, h = coco[0].copy(), h36[0].copy()
        c[:, [9, 10], 2] += swing  # wrists move forward and back
        h[:, [13, 16], 2] += swing
        takes_coco.append(c)
        takes_h36.append(h)
    return MocapData(
        coco17=np.concatenate(takes_coco).astype(np.float32), h36m17=np.concatenate(takes_h36).astype(np.float32),
        starts=np.arange(4) * 60, lengths=np.full(4, 60), names=np.array([f"t{k}" for k in range(4)]),
        datasets=np.array(["d"] * 4), actions=np.array(["swing"] * 4),
        validation=np.array([False, True, False, False]))


def test_bone_lengths_of_a_known_skeleton():
    joints = torch.zeros(17, 3)
    for child, parent in enumerate(H36M17_PARENTS):
        if parent >= 0:
            joints[child] = joints[parent] + torch.tensor([0.0, 0.1 * (child % 3 + 1), 0.0])
    lengths = train.bone_lengths(joints)
    assert lengths.shape == (16,)
    expected = [0.1 * (c % 3 + 1) for c, p in enumerate(H36M17_PARENTS) if p >= 0]
    assert torch.allclose(lengths, torch.tensor(expected))


def test_train_writes_logs_snapshots_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(train.MocapData, "load", classmethod(lambda cls: _tiny_mocap()))
    out = tmp_path / "tiny.pt"
    common = ["--out", str(out), "--channels", "8", "--steps", "2", "--batch", "2", "--frames-out", "4",
              "--threads", "1", "--val-stride", "1", "--bone-weight", "0.5", "--snapshots"]
    train.main(common + ["--epochs", "2"])
    log = [json.loads(line) for line in out.with_suffix(".log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    for record in log:
        assert record["train_loss_mm"] >= record["train_mpjpe_mm"] > 0  # the bone term is added on top
        assert np.isfinite(record["val_clean_mpjpe"]) and np.isfinite(record["val_noisy_mpjpe"])
    assert out.with_suffix(".e001.pt").exists() and out.with_suffix(".e002.pt").exists()
    assert torch.load(out.with_suffix(".last.pt"), weights_only=False)["epoch"] == 2

    train.main(common + ["--epochs", "3"])  # resumes: only epoch 3 runs
    log = [json.loads(line) for line in out.with_suffix(".log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3]
    lifter = load_lifter(out)
    assert lifter.receptive_field() == 27


def test_train_can_start_a_causal_run_from_non_causal_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(train.MocapData, "load", classmethod(lambda cls: _tiny_mocap()))
    common = ["--channels", "8", "--steps", "1", "--batch", "2", "--frames-out", "4", "--threads", "1",
              "--epochs", "1"]
    train.main(common + ["--out", str(tmp_path / "centre.pt")])
    centre = torch.load(tmp_path / "centre.pt", weights_only=True)["model"]
    train.main(common + ["--out", str(tmp_path / "causal.pt"), "--causal", "--init", str(tmp_path / "centre.pt"),
                         "--lr", "0"])
    causal = torch.load(tmp_path / "causal.pt", weights_only=True)
    assert causal["config"]["causal"] is True
    # with a zero learning rate the weights are exactly the initial ones (batch-norm statistics aside)
    for key, value in centre.items():
        if "running" not in key and "num_batches" not in key:
            assert torch.equal(causal["model"][key], value), key
