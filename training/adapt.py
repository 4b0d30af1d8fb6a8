"""Adapt a trained lifter to a user's own motions from their 2D keypoints alone (the engine of ``hpe3d adapt``).

Starting from a lifter's weights (by default the shipped supervised file), the network is fine-tuned on windows
of the user's 2D tracks with the 2D-only losses of :mod:`training.unsupervised_losses` (reprojection, the
rotation cycle turning each track about its own vertical, bone symmetry and constancy; the 2D pose prior is
available with a weight but off by default, and can first be fitted to the user's own 2D, ``prior_fit_steps``)
plus two terms that keep what the supervised training taught where the 2D says nothing (BatchNorm statistics stay frozen at the starting ones throughout):

* **anchor**: the squared Euclidean distance of the weights from the starting weights (the L2-SP pull towards
  the start of Li et al. 2018, "Explicit inductive bias for transfer learning");
* **distillation**: the network's output held to the frozen starting network's on the same windows, either as
  the mean joint distance in units of the mean limb length (``distill_on="joints"``), or as the mean distance
  between the unit directions of every bone (``distill_on="bone_directions"``): the starting network's sense of
  where each bone points in depth is kept, and the bones' lengths -- the proportions, which the user's 2D shows
  across many views -- are left to the reprojection and skeleton terms (a domain whose people have wider hips or
  shoulders than the training set's is otherwise pulled back to the training set's proportions).

The metric size of people cannot be read from 2D, so the scale term holds the mean limb length the *starting*
network gives on the user's tracks (measured before the first step): adaptation does not make people bigger or
smaller -- unless the user knows their people's size and gives it (``limb_length_m``, the mean of the eight limb
bones in metres); then the scale term holds that, and the joint distillation holds the starting network's pose
resized to it.

Resumable: the whole state goes to ``<out>.adapt-state.pt`` every ``checkpoint_s`` seconds and on SIGINT/SIGTERM,
and a later call with the same output, inputs and settings continues from it (other inputs or settings start
afresh). The result is ``<out>`` (loadable by ``hpe3d lift --weights``) and ``<out stem>.card.md`` beside it: what
it was adapted on, the settings, the steps, and the 2D-only measures before and after on the user's own tracks.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from services.common.skeletons import H36M17, coco17_to_h36m17
from services.lifter3d.keypoints2d import fill_low_confidence, normalize_screen, smooth_time
from services.lifter3d.lift import load_lifter
from services.lifter3d.model import TemporalLifterBase
from training.interrupt import restore, save_on_signal
from training.pose_flow import DEFAULT_FLOW, fit_to_poses, load_flow
from training.unsupervised_losses import (LIMB_BONES, LossWeights, bone_lengths, bone_variation,
                                          reprojection_error, self_supervised_losses, symmetry_error)

MIN_TRACK_FRAMES = 27  # shorter tracks are left out (less than one receptive field of motion)


@dataclass
class Track2D:
    """One person's 2D over consecutive frames: Human3.6M-17 in GAST-Net screen coordinates ``[F, 17, 2]``."""

    source: str
    track_id: int
    screen: np.ndarray


def track_from_pixels(source: str, track_id: int, keypoints_coco17: np.ndarray, width: float,
                      height: float) -> Track2D:
    """The cleaning :func:`services.lifter3d.lift.lift_sequence` applies (gap filling, smoothing), then COCO-17 ->
    Human3.6M-17 and screen normalisation, for COCO-17 pixels with scores ``[F, 17, 3]``."""
    kp = smooth_time(fill_low_confidence(np.asarray(keypoints_coco17, dtype=np.float32), threshold=0.3,
                                         max_gap=15), sigma=1.0)
    screen = normalize_screen(coco17_to_h36m17(kp)[..., :2], width, height).astype(np.float32)
    return Track2D(source, track_id, screen)


@dataclass
class AdaptSettings:
    """Everything that shapes an adaptation run (recorded in the card; a resume needs the same)."""

    steps: int = 200
    batch: int = 16
    frames_out: int = 8
    lr: float = 3e-5
    lr_final: float = 1e-5
    anchor: float = 0.01
    distill: float = 1.5
    distill_on: str = "joints"  # "joints" or "bone_directions" (see the module doc)
    # no 2D prior by default: the flow learnt the training data's 2D proportions, which a new domain need not share
    losses: LossWeights = field(default_factory=lambda: LossWeights(prior=0.0))
    turn_about_body: bool = True
    # with a prior weight: fit the 2D prior to the user's own 2D for this many steps first (0 = the shipped flow)
    prior_fit_steps: int = 0
    # the people's mean limb length in metres where the user knows it (e.g. from their stature); None = the starting
    # network's own on the inputs (2D cannot tell it)
    limb_length_m: float | None = None
    # weight of the distillation on windows of the training set's own 2D (rehearsal; needs that data, 0 = off)
    rehearse: float = 0.0
    seed: int = 0


@dataclass
class AdaptReport:
    """What an adaptation did and measured (also the content of the card)."""

    start_weights: str
    out: str
    sources: list[str]
    tracks: int
    frames: int
    settings: dict
    steps_done: int
    seconds: float
    limb_length_m: float
    before: dict
    after: dict
    last_losses: dict


class WindowDrawer:
    """Random windows of ``length`` frames from a set of tracks (edge-padded when shorter), weighted by track
    length, each mirrored left/right with probability one half."""

    def __init__(self, tracks: list[Track2D], length: int):
        self.tracks, self.length = tracks, length
        n = np.array([len(t.screen) for t in tracks], dtype=np.float64)
        self.p = n / n.sum()

    def draw(self, rng: np.random.Generator, batch: int) -> np.ndarray:
        out = np.empty((batch, self.length, 17, 2), dtype=np.float32)
        for b, i in enumerate(rng.choice(len(self.tracks), batch, p=self.p)):
            seq = self.tracks[i].screen
            if len(seq) < self.length:
                seq = np.pad(seq, ((0, self.length - len(seq)), (0, 0), (0, 0)), mode="edge")
            start = rng.integers(0, len(seq) - self.length + 1)
            window = seq[start:start + self.length]
            if rng.random() < 0.5:
                window = window[:, H36M17.flip_permutation] * np.array([-1.0, 1.0], dtype=np.float32)
            out[b] = window
        return out


@torch.no_grad()
def measure_2d(model: TemporalLifterBase, tracks: list[Track2D]) -> dict:
    """2D-only measures of ``model`` on whole tracks (edge-padded, eval mode): reprojection error (relative to
    the 2D pose size), left/right bone-length difference and bone-length variation over time (both relative),
    and the mean limb length in metres."""
    model.eval()
    rf, off = model.receptive_field(), model.output_offset()
    sums = {"reprojection": 0.0, "symmetry": 0.0, "bone_variation": 0.0, "limb_length_m": 0.0}
    frames = 0
    for t in tracks:
        x = torch.from_numpy(np.pad(t.screen, ((off, rf - 1 - off), (0, 0), (0, 0)), mode="edge"))[None]
        p = model(x)
        p = p - p[:, :, :1]
        n = p.shape[1]
        sums["reprojection"] += reprojection_error(p, torch.from_numpy(t.screen)[None])[0].item() * n
        sums["symmetry"] += symmetry_error(p).item() * n
        sums["bone_variation"] += bone_variation(p).item() * n
        sums["limb_length_m"] += bone_lengths(p)[..., list(LIMB_BONES)].mean().item() * n
        frames += n
    return {k: v / frames for k, v in sums.items()}


def prior_on_user_2d(flow, tracks: list[Track2D], steps: int, seed: int):
    """The 2D pose prior fitted further to every frame of ``tracks`` and their mirror images
    (:func:`training.pose_flow.fit_to_poses`): the turned projections of the cycle must then look like the
    user's 2D rather than the training set's."""
    frames = np.concatenate([t.screen for t in tracks])
    mirrored = frames[:, H36M17.flip_permutation] * np.array([-1.0, 1.0], dtype=np.float32)
    return fit_to_poses(flow, torch.from_numpy(np.concatenate([frames, mirrored])), steps, seed=seed)


def bone_directions(rel: torch.Tensor) -> torch.Tensor:
    """``[..., 17, 3]`` Human3.6M joints -> ``[..., 16, 3]`` unit vectors of the bones in ``H36M17.bones``."""
    parents, children = zip(*H36M17.bones)
    d = rel[..., list(children), :] - rel[..., list(parents), :]
    return d / torch.linalg.vector_norm(d, dim=-1, keepdim=True).clamp(min=1e-6)


def distillation(lifted: torch.Tensor, teacher: torch.Tensor, limb_length: float, on: str) -> torch.Tensor:
    """The distillation term (module doc): root-relative ``lifted`` against the starting network's ``teacher``
    output, as joint distance over ``limb_length`` (``on="joints"``) or bone-direction distance
    (``on="bone_directions"``, between 0 and 2; 0.1 is about 6 degrees)."""
    if on == "joints":
        return torch.linalg.vector_norm(lifted - teacher, dim=-1).mean() / limb_length
    if on == "bone_directions":
        return torch.linalg.vector_norm(bone_directions(lifted) - bone_directions(teacher), dim=-1).mean()
    raise ValueError(f"distill_on must be 'joints' or 'bone_directions', not {on!r}")


def _fingerprint(start: Path, tracks: list[Track2D], settings: AdaptSettings) -> str:
    h = hashlib.sha256(Path(start).read_bytes())
    for t in tracks:
        h.update(t.source.encode())
        h.update(np.ascontiguousarray(t.screen).tobytes())
    h.update(json.dumps(asdict(settings), sort_keys=True).encode())
    return h.hexdigest()


def adapt(start_weights: Path, tracks: list[Track2D], out: Path, settings: AdaptSettings = AdaptSettings(),
          prior_path: Path = DEFAULT_FLOW, progress: Callable[[str], None] = print, checkpoint_s: float = 120.0,
          threads: int = 1, rehearsal: Callable[[np.random.Generator, int, int], np.ndarray] | None = None
          ) -> AdaptReport:
    """Fine-tune ``start_weights`` on ``tracks`` and write ``out`` plus its card; see the module doc.

    ``rehearsal(rng, batch, frames)`` gives ``[batch, frames, 17, 2]`` model inputs of the data the starting network
    was trained on (:func:`training_2d_windows`); with ``settings.rehearse > 0`` the network's output on them is held
    to the starting network's at its own size, weighted by ``settings.rehearse``.

    Raises:
        ValueError: when no track is long enough to learn from.
        FileNotFoundError: when the starting weights or the 2D prior are missing (the message names the file).
    """
    torch.set_num_threads(threads)
    tracks = [t for t in tracks if len(t.screen) >= MIN_TRACK_FRAMES]
    if not tracks:
        raise ValueError(f"no track of at least {MIN_TRACK_FRAMES} frames to adapt on")
    distillation(torch.zeros(1, 17, 3), torch.zeros(1, 17, 3), 1.0, settings.distill_on)  # refuse a bad name early
    if settings.rehearse > 0 and rehearsal is None:
        raise ValueError("rehearse needs windows of the training set's 2D (rehearsal=training_2d_windows())")
    t0 = time.time()
    model = load_lifter(start_weights)
    ckpt = torch.load(start_weights, map_location="cpu", weights_only=True)
    config = dict(ckpt["config"]) if "config" in ckpt else None
    if config is None:
        raise ValueError(f"{start_weights}: only hpe3d lifter checkpoints (with a 'config') can be adapted")
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    start_params = [p.detach().clone() for p in model.parameters()]
    prior = load_flow(prior_path) if settings.losses.prior > 0 else None
    if prior is not None and settings.prior_fit_steps > 0:
        prior = prior_on_user_2d(prior, tracks, settings.prior_fit_steps, settings.seed)
        progress(f"2D prior fitted to the {sum(len(t.screen) for t in tracks)} frames of the inputs "
                 f"({settings.prior_fit_steps} steps)")
    before = measure_2d(model, tracks)
    start_limb = before["limb_length_m"]
    limb = settings.limb_length_m if settings.limb_length_m else start_limb
    if limb <= 0:
        raise ValueError(f"the mean limb length must be positive, not {limb}")
    rf = model.receptive_field()
    drawer = WindowDrawer(tracks, settings.frames_out + 2 * (rf - 1))
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.0)
    rng = np.random.default_rng(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    state_path = out.with_name(out.name + ".adapt-state.pt")
    fingerprint = _fingerprint(start_weights, tracks, settings)
    step = 0
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        if state.get("fingerprint") == fingerprint:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            step, limb = state["step"], state["limb_length_m"]
            rng.bit_generator.state = state["rng"]
            gen.set_state(state["torch_gen"])
            progress(f"resumed from {state_path} at step {step}/{settings.steps}")
        else:
            progress(f"{state_path} belongs to other inputs or settings: starting afresh")
    out.parent.mkdir(parents=True, exist_ok=True)

    def save_state() -> None:
        tmp = state_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                    "limb_length_m": limb, "rng": rng.bit_generator.state, "torch_gen": gen.get_state(),
                    "fingerprint": fingerprint}, tmp)
        tmp.replace(state_path)

    old_handlers = save_on_signal(save_state, lambda signum: progress(
        f"stopped at step {step}; the next run with the same arguments resumes from {state_path}"))
    last: dict[str, float] = {}
    try:
        t_ckpt = time.time()
        while step < settings.steps:
            lr = settings.lr_final + 0.5 * (settings.lr - settings.lr_final) * (
                1 + math.cos(math.pi * step / max(1, settings.steps)))
            for group in opt.param_groups:
                group["lr"] = lr
            # BatchNorm keeps the starting statistics and dropout stays off: with a few small batches of a new
            # domain, batch statistics would move every output (and the original domain's) before any weight did
            model.eval()
            x = torch.from_numpy(drawer.draw(rng, settings.batch))
            terms = self_supervised_losses(model, x, gen, settings.losses, prior, limb_length=limb,
                                           turn_about_body=settings.turn_about_body)
            with torch.no_grad():
                teacher_out = teacher(x)
                # at the size being held: the starting network's pose, resized to a given limb length
                teacher_out = (teacher_out - teacher_out[:, :, :1]) * (limb / start_limb)
            distill = distillation(terms["lifted"], teacher_out, limb, settings.distill_on)
            anchor = sum((p - p0).square().sum() for p, p0 in zip(model.parameters(), start_params))
            total = terms["total"] + settings.distill * distill + settings.anchor * anchor
            rehearsed = torch.zeros(())
            if settings.rehearse > 0:
                xr = torch.from_numpy(rehearsal(rng, settings.batch, x.shape[1]))
                with torch.no_grad():
                    teacher_r = teacher(xr)
                lifted_r = model(xr)
                rehearsed = distillation(lifted_r - lifted_r[:, :, :1], teacher_r - teacher_r[:, :, :1], start_limb,
                                         "joints")
                total = total + settings.rehearse * rehearsed
            opt.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            step += 1
            last = {k: float(v.detach()) for k, v in terms.items() if k != "lifted"}
            last.update(distill=float(distill.detach()), anchor=float(anchor.detach()), total=float(total.detach()),
                        rehearse=float(rehearsed.detach()))
            if step % 10 == 0 or step == settings.steps:
                progress(f"step {step}/{settings.steps}: loss {last['total']:.4f} (reprojection "
                         f"{last['reprojection']:.4f}, 3D consistency {last['consistency_3d']:.4f}, distillation "
                         f"{last['distill']:.4f}), {time.time() - t0:.0f} s")
            if time.time() - t_ckpt > checkpoint_s:
                save_state()
                t_ckpt = time.time()
        save_state()
    finally:
        restore(old_handlers)
    after = measure_2d(model, tracks)
    torch.save({"model": model.state_dict(), "config": config, "format": "hpe3d-lifter-v1",
                "adapted_from": str(start_weights), "adapt_settings": json.loads(json.dumps(asdict(settings)))}, out)
    report = AdaptReport(str(start_weights), str(out), sorted({t.source for t in tracks}), len(tracks),
                         int(sum(len(t.screen) for t in tracks)), json.loads(json.dumps(asdict(settings))), step,
                         time.time() - t0, limb, before, after, last)
    write_card(report, card_path(out))
    return report


def training_2d_windows(noisy_frac: float = 0.6) -> Callable[[np.random.Generator, int, int], np.ndarray]:
    """Rehearsal windows for :func:`adapt`: random windows of the Bandai training takes (never the validation
    takes) seen only through their 2D, drawn as the supervised trainer draws them (virtual cameras, bone scaling,
    flips, detector-like noise in ``noisy_frac`` of the batches). Needs the training mocap beside the checkout."""
    from training.dataset import MocapData, WindowSampler, make_batch

    data = MocapData.load()
    samplers: dict[int, WindowSampler] = {}

    def draw(rng: np.random.Generator, batch: int, frames: int) -> np.ndarray:
        sampler = samplers.setdefault(frames, WindowSampler(data, data.takes(validation=False), frames))
        coco, h36 = sampler.sample(rng, batch)
        return make_batch(rng, coco, h36, noisy=bool(rng.random() < noisy_frac), augment=True).inputs

    return draw


def card_path(weights: Path) -> Path:
    """Where the card of adapted weights goes: ``<stem>.card.md`` beside them."""
    return weights.with_name(weights.stem + ".card.md")


def write_card(report: AdaptReport, path: Path) -> None:
    """The adapted weights' model card (Markdown)."""
    s = report.settings
    turns = "each track's own vertical" if s["turn_about_body"] else "the camera's y axis"
    prior_note = (f" (the 2D prior fitted to these inputs' 2D for {s['prior_fit_steps']} steps first)"
                  if s.get("prior_fit_steps") and s["losses"]["prior"] > 0 else "")
    rehearse_note = (f", rehearsal on the starting network's own training 2D at weight {s['rehearse']:g}"
                     if s.get("rehearse") else "")
    size_note = ("given by the user: 2D cannot tell a person's size" if s.get("limb_length_m") else
                 "the starting network's on these tracks: 2D cannot tell a person's size")
    rows = "\n".join(f"| {k} | {report.before[k]:.4f} | {report.after[k]:.4f} |" for k in report.before)
    sources = "\n".join(f"* `{src}`" for src in report.sources)
    path.write_text(f"""# Adapted lifter: {Path(report.out).name}

Made by `hpe3d adapt` (engine: `training/adapt.py`): the lifter `{report.start_weights}` fine-tuned on the 2D
keypoints listed below with no 3D label -- the 2D-only losses of `training/unsupervised_losses.py`
(reprojection, rotate-project-lift-again consistency, bone symmetry and constancy, and the 2D pose prior
`training/weights/pose_flow_2d.pt` at the weight given below) plus an L2 pull towards the starting weights and
distillation from the starting network on the same windows. Loads with `hpe3d lift --weights {Path(report.out).name}`.

## Adapted on

{report.tracks} tracks, {report.frames} frames (tracks shorter than {MIN_TRACK_FRAMES} frames are left out), from:

{sources}

## Settings

{s['steps']} steps of {s['batch']} windows ({s['frames_out']} + 52 frames each), learning rate {s['lr']:g} -> \
{s['lr_final']:g} (cosine), anchor weight {s['anchor']:g}, distillation weight {s['distill']:g} on {s.get('distill_on', 'joints')}, loss weights \
{json.dumps(s['losses'])}{prior_note}{rehearse_note}, virtual turns about {turns}, seed {s['seed']}. Steps done: {report.steps_done}; \
{report.seconds:.0f} s on this machine. Mean limb length held at {report.limb_length_m * 100:.1f} cm ({size_note}).

## Measured on the same tracks (2D only: there is no 3D truth for them)

| measure | before | after |
| --- | ---: | ---: |
{rows}

reprojection: mean 2D distance between the input and the lifted pose projected (root placed by least squares,
focal-length prior), relative to the 2D pose's size; symmetry: mean relative difference of left and right bone
lengths; bone_variation: mean over bones of (std / mean) of the length over each track; limb_length_m: mean
length of the 8 limb bones. Lower is better for the first three. These say the 3D fits the 2D better; they are
not a 3D error. Last step's losses: {json.dumps({k: round(v, 4) for k, v in report.last_losses.items()})}.

## Licence

Inherited from the starting weights (the shipped ones: CC BY-NC 4.0, non-commercial, from the
Bandai-Namco-Research-Motiondataset) and from whatever licence the adapted-on videos carry.
""")
