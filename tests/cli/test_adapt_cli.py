"""``hpe3d adapt`` on a tiny poses.json: a few steps from the shipped weights, weights that load and a card
beside them, resumption after an interruption, clear refusals of bad input."""
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from hpe3d_cli.cli import main
from services.lifter3d.lift import DEFAULT_WEIGHTS, load_lifter
from tests.training.test_lifter_dataset import _standing_person
from training.adapt import AdaptSettings, adapt, card_path, track_from_pixels
from training.dataset import sample_cameras


def _poses_json(path: Path, frames: int = 40) -> None:
    """One person walking sideways, filmed by a virtual 1280x720 camera, 2D only (our poses.json)."""
    coco, _ = _standing_person(b=1, t=frames)
    coco = coco.copy()
    coco[0, :, [9, 10], 2] += 0.2 * np.sin(np.linspace(0, 2 * np.pi, frames))[None, :]  # arms swing
    cams = sample_cameras(np.random.default_rng(3), coco)
    pix = cams.project(cams.to_camera(coco))[0]
    path.write_text(json.dumps({
        "schema_version": "2.0", "video": {"width": int(cams.width[0]), "height": int(cams.height[0]), "fps": 30.0},
        "frames": [{"index": i, "persons": [{"track_id": 1, "keypoints_2d": [[*p, 0.9] for p in kp.tolist()]}]}
                   for i, kp in enumerate(pix)]}))


def test_adapt_runs_a_few_steps_and_writes_loadable_weights_and_a_card(tmp_path, capsys):
    src, out = tmp_path / "clip.poses.json", tmp_path / "adapted" / "mine.pt"
    _poses_json(src)
    assert main(["adapt", str(src), "-o", str(out), "--steps", "3", "--batch", "2"]) == 0
    printed = capsys.readouterr().out
    assert "step 3/3" in printed and f"wrote {out}" in printed
    model = load_lifter(out)
    shipped = load_lifter(DEFAULT_WEIGHTS)
    assert model.receptive_field() == shipped.receptive_field() == 27
    changed = [not torch.equal(a, b) for a, b in zip(model.state_dict().values(), shipped.state_dict().values())]
    assert any(changed)
    card = card_path(out).read_text()
    assert card_path(out) == tmp_path / "adapted" / "mine.card.md"
    assert str(src) in card and "1 tracks, 40 frames" in card and "Steps done: 3" in card
    assert "| reprojection |" in card and "non-commercial" in card


def test_an_interrupted_adaptation_resumes_where_it_stopped(tmp_path):
    src, out = tmp_path / "clip.poses.json", tmp_path / "mine.pt"
    _poses_json(src)
    doc = json.loads(src.read_text())
    kp = np.array([f["persons"][0]["keypoints_2d"] for f in doc["frames"]], np.float32)
    tracks = [track_from_pixels(str(src), 1, kp, doc["video"]["width"], doc["video"]["height"])]
    settings = AdaptSettings(steps=12, batch=2)
    lines: list[str] = []

    def stop_at_ten(line: str) -> None:
        lines.append(line)
        if line.startswith("step 10/12"):
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(SystemExit):
        adapt(DEFAULT_WEIGHTS, tracks, out, settings, progress=stop_at_ten)
    assert not out.exists() and out.with_name(out.name + ".adapt-state.pt").exists()
    lines.clear()
    report = adapt(DEFAULT_WEIGHTS, tracks, out, settings, progress=lines.append)
    assert lines[0].startswith("resumed from") and "at step 10/12" in lines[0]
    assert report.steps_done == 12 and out.exists()


def test_bad_inputs_are_refused_with_a_reason(tmp_path, capsys):
    assert main(["adapt", str(tmp_path / "missing.json"), "-o", str(tmp_path / "w.pt")]) == 2
    assert "no such file" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hello": 1}))
    assert main(["adapt", str(bad), "-o", str(tmp_path / "w.pt")]) == 2
    assert "unknown keypoint file" in capsys.readouterr().out
    short = tmp_path / "short.poses.json"
    _poses_json(short, frames=10)
    assert main(["adapt", str(short), "-o", str(tmp_path / "w.pt")]) == 2
    assert "no track of at least 27 frames" in capsys.readouterr().out


def test_the_distillation_target_prior_fit_and_final_rate_are_options(tmp_path, capsys):
    src, out = tmp_path / "clip.poses.json", tmp_path / "mine.pt"
    _poses_json(src)
    assert main(["adapt", str(src), "-o", str(out), "--steps", "2", "--batch", "2", "--distill-on",
                 "bone_directions", "--prior-weight", "0.1", "--prior-fit-steps", "2", "--lr-final", "2e-5"]) == 0
    assert "2D prior fitted to the 40 frames of the inputs (2 steps)" in capsys.readouterr().out
    settings = torch.load(out, map_location="cpu", weights_only=True)["adapt_settings"]
    assert settings["distill_on"] == "bone_directions" and settings["prior_fit_steps"] == 2
    assert settings["lr_final"] == 2e-5 and settings["losses"]["prior"] == 0.1
    card = card_path(out).read_text()
    assert "on bone_directions" in card and "fitted to these inputs' 2D for 2 steps" in card
    with pytest.raises(SystemExit):
        main(["adapt", str(src), "-o", str(out), "--distill-on", "bones"])


def test_a_given_limb_length_is_held_instead_of_the_starting_networks(tmp_path):
    """The people's size, where the user knows it: the adapted network's limbs move towards it (with a learning
    rate large enough to show in a few steps) and end well above where the same run without it leaves them."""
    src = tmp_path / "clip.poses.json"
    _poses_json(src)
    doc = json.loads(src.read_text())
    kp = np.array([f["persons"][0]["keypoints_2d"] for f in doc["frames"]], np.float32)
    tracks = [track_from_pixels(str(src), 1, kp, doc["video"]["width"], doc["video"]["height"])]
    common = dict(steps=15, batch=2, lr=1e-3, lr_final=1e-3)
    kept = adapt(DEFAULT_WEIGHTS, tracks, tmp_path / "kept.pt", AdaptSettings(**common), progress=lambda _: None)
    start = kept.before["limb_length_m"]
    given = adapt(DEFAULT_WEIGHTS, tracks, tmp_path / "given.pt", AdaptSettings(**common, limb_length_m=1.3 * start),
                  progress=lambda _: None)
    assert given.limb_length_m == pytest.approx(1.3 * start)
    assert given.after["limb_length_m"] > kept.after["limb_length_m"] + 0.1 * start
    assert "given by the user" in card_path(tmp_path / "given.pt").read_text()
    assert "given by the user" not in card_path(tmp_path / "kept.pt").read_text()


def test_rehearsal_holds_the_output_on_the_training_2d_and_needs_its_windows(tmp_path):
    src = tmp_path / "clip.poses.json"
    _poses_json(src)
    doc = json.loads(src.read_text())
    kp = np.array([f["persons"][0]["keypoints_2d"] for f in doc["frames"]], np.float32)
    tracks = [track_from_pixels(str(src), 1, kp, doc["video"]["width"], doc["video"]["height"])]
    with pytest.raises(ValueError, match="rehearse needs"):
        adapt(DEFAULT_WEIGHTS, tracks, tmp_path / "r.pt", AdaptSettings(steps=2, batch=2, rehearse=1.0))
    drawn = []

    def windows(rng, batch, frames):  # stand-in for training_2d_windows: the track's own 2D, shifted
        drawn.append((batch, frames))
        return np.repeat(tracks[0].screen[None, :1] + 0.05, batch, 0).repeat(frames, 1)

    lines = []
    report = adapt(DEFAULT_WEIGHTS, tracks, tmp_path / "r.pt", AdaptSettings(steps=2, batch=2, rehearse=1.0),
                   progress=lines.append, rehearsal=windows)
    assert drawn == [(2, 60), (2, 60)] and report.last_losses["rehearse"] >= 0
    assert "rehearsal on the starting network's own training 2D at weight 1" in card_path(tmp_path / "r.pt").read_text()
