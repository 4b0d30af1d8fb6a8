"""A learned prior over single-frame 2D poses: a RealNVP normalising flow (Dinh et al. 2017), as ElePose uses one.

A pose ``uv [..., 17, 2]`` (Human3.6M-17, GAST-Net screen coordinates) is made position- and size-free (root at
the origin, divided by its RMS joint distance from the root) and reduced to the 13 joints a 2D detector gives
independently (:data:`FREE_JOINTS`: the H36M pelvis, left hip, spine and thorax of 2D input are midpoints of
COCO joints, so they carry no information of their own and would make the density singular), 26 numbers,
standardised with the training data's mean and spread, and mapped by affine coupling layers to a standard normal.
Training adds a little gaussian noise (:data:`TRAIN_NOISE`) to the canonical poses so the density stays smooth.
``nll`` is the negative log-likelihood per dimension; the lifter's 2D-only training asks the projections of its
rotated poses to score well under it (:mod:`training.unsupervised_losses`).

Train it (2D poses only: the Bandai training takes projected by random virtual cameras, clean and with
detector-like noise, :mod:`training.dataset`):

    python -m training.pose_flow --out training/weights/pose_flow_2d.pt
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from services.common.skeletons import H36M17

#: Human3.6M-17 joints that 2D input gives independently of each other (see the module doc).
FREE_JOINTS = tuple(H36M17.index(j) for j in (
    "right_hip", "right_knee", "right_ankle", "left_knee", "left_ankle", "neck_nose", "head_top",
    "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow", "right_wrist"))
DIMS = 2 * len(FREE_JOINTS)
#: The trained prior that ships (2D only, Bandai training takes; non-commercial like its data).
DEFAULT_FLOW = Path(__file__).resolve().parent / "weights" / "pose_flow_2d.pt"
TRAIN_NOISE = 0.01  # sigma of the noise added to canonical poses in training (units of the pose's RMS size)


def _pose_size(uv: torch.Tensor) -> torch.Tensor:
    """RMS joint distance from the root of 2D poses ``[..., 17, 2]``, ``[..., 1, 1]``."""
    return (uv - uv[..., :1, :]).square().sum(-1).mean(-1).sqrt()[..., None, None]


def canonical_2d(uv: torch.Tensor) -> torch.Tensor:
    """``[..., 17, 2]`` -> ``[..., 26]``: the :data:`FREE_JOINTS` relative to the root, divided by the RMS
    distance of all joints from the root."""
    rel = uv - uv[..., :1, :]
    scale = rel.square().sum(-1).mean(-1).sqrt().clamp(min=1e-4)[..., None, None]
    return (rel[..., list(FREE_JOINTS), :] / scale).flatten(-2)


class Coupling(nn.Module):
    """One affine coupling layer: the dimensions where ``mask`` is 1 pass through and condition the others."""

    def __init__(self, mask: torch.Tensor, hidden: int):
        super().__init__()
        self.register_buffer("mask", mask)
        self.net = nn.Sequential(nn.Linear(DIMS, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, 2 * DIMS))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Data side -> latent side; returns ``(z', log|det|)``."""
        s, t = self.net(z * self.mask).chunk(2, dim=-1)
        s = torch.tanh(s) * (1 - self.mask)
        t = t * (1 - self.mask)
        return z * torch.exp(s) + t, s.sum(-1)


class PoseFlow(nn.Module):
    """RealNVP over canonical 2D poses. ``nll(uv)`` -> per-pose negative log-likelihood per dimension."""

    def __init__(self, layers: int = 8, hidden: int = 256, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        masks = []
        for i in range(layers):
            if i % 2 == 0:
                perm = torch.randperm(DIMS, generator=gen)
                mask = torch.zeros(DIMS)
                mask[perm[: DIMS // 2]] = 1
            else:
                mask = 1 - masks[-1]
            masks.append(mask)
        self.couplings = nn.ModuleList(Coupling(m, hidden) for m in masks)
        self.register_buffer("mean", torch.zeros(DIMS))
        self.register_buffer("std", torch.ones(DIMS))
        self.config = {"layers": layers, "hidden": hidden, "seed": seed}

    def nll(self, uv: torch.Tensor, noise: float = 0.0) -> torch.Tensor:
        """Negative log-likelihood per dimension of 2D poses ``uv [..., 17, 2]`` -> ``[...]``; ``noise`` adds
        gaussian noise of that sigma to the canonical pose first (training)."""
        c = canonical_2d(uv)
        if noise > 0:
            c = c + noise * torch.randn_like(c)
        z = (c - self.mean) / self.std
        logdet = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
        for layer in self.couplings:
            z, ld = layer(z)
            logdet = logdet + ld
        log_pz = -0.5 * z.square().sum(-1) - 0.5 * DIMS * math.log(2 * math.pi)
        return -(log_pz + logdet - self.std.log().sum()) / DIMS


def save_flow(flow: PoseFlow, path: Path, extra: dict | None = None) -> None:
    torch.save({"model": flow.state_dict(), "config": flow.config, "format": "hpe3d-pose-flow-v1", **(extra or {})},
               path)


def load_flow(path: str | Path, device: str = "cpu") -> PoseFlow:
    """Load a flow written by this module's training, frozen and in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"2D pose prior not found: {path}. Train it with "
                                f"`python -m training.pose_flow --out {path}`")
    ckpt = torch.load(path, map_location=device, weights_only=True)
    flow = PoseFlow(**ckpt["config"])
    flow.load_state_dict(ckpt["model"])
    for p in flow.parameters():
        p.requires_grad_(False)
    return flow.to(device).eval()


def fit_to_poses(flow: PoseFlow, poses: torch.Tensor, steps: int, batch: int = 512, lr: float = 3e-4,
                 seed: int = 0) -> PoseFlow:
    """A copy of ``flow`` fitted further to the 2D poses ``poses [N, 17, 2]`` (a user's own 2D: the prior then
    says what *their* 2D looks like, not what the training set's did), then frozen; the standardisation is the
    original's. Seeded: the same inputs give the same flow."""
    import copy

    fitted = copy.deepcopy(flow).train()
    for p in fitted.parameters():
        p.requires_grad_(True)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(fitted.parameters(), lr=lr)
    for _ in range(steps):
        pick = torch.randint(0, len(poses), (batch,), generator=gen)
        loss = fitted.nll(poses[pick] + TRAIN_NOISE * torch.randn(
            (batch, 17, 2), generator=gen) * _pose_size(poses[pick]), noise=0.0).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(fitted.parameters(), 5.0)
        opt.step()
    for p in fitted.parameters():
        p.requires_grad_(False)
    return fitted.eval()


def sample_poses(rng: np.random.Generator, sampler, batch: int, noisy_frac: float = 0.5) -> np.ndarray:
    """``[batch * frames, 17, 2]`` normalised 2D poses from random windows of ``sampler`` (2D only)."""
    from training.dataset import NoiseConfig, make_batch

    coco, h36 = sampler.sample(rng, batch)
    noisy = rng.random() < noisy_frac
    inputs = make_batch(rng, coco, h36, noisy=noisy, augment=True, noise=NoiseConfig()).inputs
    return inputs.reshape(-1, 17, 2)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=64, help="windows per step (8 frames each)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    from training.dataset import MocapData, WindowSampler

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    data = MocapData.load()
    train = WindowSampler(data, data.takes(validation=False), 8)
    val = WindowSampler(data, data.takes(validation=True), 8)
    flow = PoseFlow(seed=args.seed)
    stats = torch.from_numpy(np.concatenate([sample_poses(rng, train, 256) for _ in range(8)]))
    canon = canonical_2d(stats)
    flow.mean.copy_(canon.mean(0))
    flow.std.copy_(canon.std(0))
    val_poses = torch.from_numpy(np.concatenate([sample_poses(np.random.default_rng([args.seed, 1, i]), val, 128)
                                                 for i in range(4)]))
    opt = torch.optim.Adam(flow.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps, eta_min=args.lr / 20)
    log = args.out.with_suffix(".log.jsonl")
    t0 = time.time()
    for step in range(1, args.steps + 1):
        uv = torch.from_numpy(sample_poses(rng, train, args.batch))
        loss = flow.nll(uv, noise=TRAIN_NOISE).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 5.0)
        opt.step()
        sched.step()
        if step % 250 == 0 or step == args.steps:
            with torch.no_grad():
                val_nll = flow.nll(val_poses).mean().item()
            record = {"step": step, "train_nll": loss.item(), "val_nll": val_nll, "elapsed_s": time.time() - t0}
            print(json.dumps(record), flush=True)
            with log.open("a") as f:
                f.write(json.dumps(record) + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_flow(flow, args.out, {"steps": args.steps, "seed": args.seed})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
