"""Train the GAST-Net lifter from 2D keypoint sequences alone: no 3D label enters any loss.

    python -m training.pose_flow --out training/weights/pose_flow_2d.pt            # the 2D pose prior, first
    python -m training.train_unsupervised --run-dir training/runs/unsup \\
        --out services/lifter3d/weights/gastnet_2d_only_27f.pt [--depth-only --w-proportion 5]

``--depth-only`` builds the GAST-Net that predicts only depth from size-normalised 2D (x, y are the input's;
:class:`services.lifter3d.model.GASTNet`), ``--w-proportion`` weights the adult limb-proportion term; the shipped
file was trained with both (its card gives the commands as run).

Data: the Bandai-Namco training takes seen only through their 2D projections -- random virtual cameras,
detector-like noise and flips exactly as the supervised trainer draws them (:func:`training.dataset.make_batch`).
The 3D of those takes is used for two things only, neither of which reaches the optimiser: a monitoring figure in
the log (``monitor_mpjpe_mm``) and the validation with :func:`training.evaluate.evaluate`.

Losses (:mod:`training.unsupervised_losses`): reprojection onto the input 2D, lift -> random rotation -> project
-> lift again with 3D and 2D consistency, a normalising-flow prior on the rotated projections, left/right bone
symmetry, constant bone lengths over time, and the mean limb length of an adult for the metric scale. The
consistency and prior terms wait for a warm-up (``--warmup-steps``) in which the network learns to follow its
2D input, then ramp up.

Resumable and seeded: the full state (model, optimiser, step, generators, log) goes to ``<run-dir>/last.pt``
every ``--checkpoint-minutes`` and on SIGINT/SIGTERM; a later run with the same ``--run-dir`` continues from it.
The weights at every ``--snapshot-every`` steps are kept as ``<run-dir>/step_NNNNNN.pt``; at the end ``--out`` gets
the mean of the last ``--average`` snapshots (chosen by step count, never by a 3D figure).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from services.lifter3d.model import build_model
from training.dataset import MocapData, NoiseConfig, WindowSampler, make_batch
from training.evaluate import evaluate
from training.interrupt import save_on_signal
from training.pose_flow import DEFAULT_FLOW, load_flow
from training.unsupervised_losses import LIMB_LENGTH_M, LossWeights, self_supervised_losses



def add_loss_arguments(p: argparse.ArgumentParser, defaults: LossWeights = LossWeights()) -> None:
    """``--w-<term>`` options for every term of :class:`LossWeights` (shared with :mod:`training.adapt`)."""
    for name, value in defaults.as_dict().items():
        p.add_argument(f"--w-{name.replace('_', '-')}", dest=f"w_{name}", type=float, default=value,
                       help=f"weight of the {name.replace('_', ' ')} term (default {value})")


def loss_weights(args: argparse.Namespace) -> LossWeights:
    return LossWeights(**{name: getattr(args, f"w_{name}") for name in LossWeights().as_dict()})


#: The terms that only make sense once the lifted poses follow their 2D: switched on after the warm-up.
RAMPED_TERMS = ("consistency_3d", "consistency_2d", "prior")


def ramped_weights(weights: LossWeights, step: int, warmup: int) -> LossWeights:
    """``weights`` with the :data:`RAMPED_TERMS` at 0 for the first ``warmup`` steps, then rising linearly to
    their full value over the next ``warmup`` steps. Without a warm-up a fresh network settles on one mean pose:
    the prior and the consistency terms are easiest to satisfy by ignoring the input."""
    if warmup <= 0:
        return weights
    ramp = min(max((step - warmup) / warmup, 0.0), 1.0)
    values = weights.as_dict()
    return LossWeights(**{k: v * ramp if k in RAMPED_TERMS else v for k, v in values.items()})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", type=Path, required=True, help="resume state, log and snapshots")
    p.add_argument("--out", type=Path, default=None, help="weights file written at the end (mean of snapshots)")
    p.add_argument("--prior", type=Path, default=DEFAULT_FLOW, help="2D pose flow (training.pose_flow)")
    p.add_argument("--init", type=Path, default=None,
                   help="start from these 2D-only weights (e.g. an earlier run's snapshot); ignored when resuming")
    p.add_argument("--channels", type=int, default=32, help="GAST-Net width (the shipped 27-frame file: 32)")
    p.add_argument("--steps", type=int, default=3000, help="optimiser steps in total (resumed runs count on)")
    p.add_argument("--batch", type=int, default=16, help="windows per step")
    p.add_argument("--frames-out", type=int, default=8,
                   help="frames per window that get both lifts (window = frames-out + 2 x 26)")
    p.add_argument("--lr", type=float, default=1e-3, help="initial learning rate (AdamW)")
    p.add_argument("--lr-final", type=float, default=5e-5, help="learning rate at the last step (cosine)")
    p.add_argument("--noisy-frac", type=float, default=0.6, help="share of batches with detector noise")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout probability")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (the machine is shared)")
    p.add_argument("--log-every", type=int, default=25, help="steps between log lines")
    p.add_argument("--eval-every", type=int, default=300, help="steps between validations (0: none)")
    p.add_argument("--val-stride", type=int, default=3, help="validate on every n-th validation take")
    p.add_argument("--snapshot-every", type=int, default=100, help="steps between kept weight snapshots")
    p.add_argument("--average", type=int, default=3, help="snapshots averaged into --out")
    p.add_argument("--warmup-steps", type=int, default=800,
                   help="steps with only the reprojection and skeleton terms; the consistency and prior terms then "
                        "ramp up linearly over as many steps again (0: all terms from the start)")
    p.add_argument("--depth-only", action="store_true",
                   help="the network predicts only each joint's depth from root-centred, size-normalised 2D; x and y "
                        "are the input's (services.lifter3d.model.GASTNet depth_only), the size the adult limb length")
    p.add_argument("--turn-about-body", action="store_true",
                   help="turn each sequence about its own vertical instead of the camera's y axis")
    p.add_argument("--checkpoint-minutes", type=float, default=3.0, help="minutes between resume states")
    add_loss_arguments(p)
    return p.parse_args(argv)


def average_snapshots(paths: list[Path]) -> dict:
    """The mean of several weight files of one model (same keys); config and metadata of the last."""
    states = [torch.load(p, map_location="cpu", weights_only=True) for p in paths]
    out = dict(states[-1])
    mean = {}
    for key, value in states[-1]["model"].items():
        if value.is_floating_point():
            mean[key] = sum(s["model"][key] for s in states) / len(states)
        else:
            mean[key] = value
    out["model"] = mean
    out["averaged"] = [p.name for p in paths]
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    config = {"kind": "gastnet", "channels": args.channels, "filter_widths": [3, 3, 3], "causal": False,
              "dropout": args.dropout}
    if args.depth_only:
        config |= {"depth_only": True, "limb_length_m": LIMB_LENGTH_M}
    model = build_model(config)
    prior = load_flow(args.prior)
    weights = loss_weights(args)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    run = args.run_dir
    run.mkdir(parents=True, exist_ok=True)
    last, log_path = run / "last.pt", run / "log.jsonl"
    step = 0
    if last.exists():
        state = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step = state["step"]
        rng.bit_generator.state = state["rng"]
        gen.set_state(state["torch_gen"])
        torch.set_rng_state(state["torch_rng"])
        print(f"resumed from {last} at step {step}", flush=True)
    elif args.init is not None:
        init = torch.load(args.init, map_location="cpu", weights_only=True)
        if init.get("training") != "2d-only":
            raise ValueError(f"{args.init} was not trained from 2D alone (no 'training': '2d-only' mark)")
        model.load_state_dict(init["model"])
        print(f"initialised from {args.init}", flush=True)

    data = MocapData.load()
    rf, off = model.receptive_field(), model.output_offset()
    window = args.frames_out + 2 * (rf - 1)
    sampler = WindowSampler(data, data.takes(validation=False), window)
    val_takes = data.takes(validation=True)[:: args.val_stride]
    print(f"model {config} params {sum(p.numel() for p in model.parameters())}; train takes {len(sampler.takes)}, "
          f"val takes {len(val_takes)}; window {window} frames; weights {weights.as_dict()}", flush=True)

    def save_last() -> None:
        tmp = last.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                    "rng": rng.bit_generator.state, "torch_gen": gen.get_state(), "torch_rng": torch.get_rng_state(),
                    "config": config, "args": {k: str(v) for k, v in vars(args).items()}}, tmp)
        tmp.replace(last)

    save_on_signal(save_last, lambda signum: print(f"signal {signum}: saved {last} at step {step} and stopping",
                                                   flush=True))

    def log(record: dict) -> None:
        record = json.loads(json.dumps(record))
        print(json.dumps(record), flush=True)
        with log_path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    sums: dict[str, float] = {}
    count, t_log, t_ckpt = 0, time.time(), time.time()
    while step < args.steps:
        lr = args.lr_final + 0.5 * (args.lr - args.lr_final) * (1 + math.cos(math.pi * step / max(1, args.steps)))
        for group in opt.param_groups:
            group["lr"] = lr
        model.train()
        coco, h36 = sampler.sample(rng, args.batch)
        batch = make_batch(rng, coco, h36, noisy=rng.random() < args.noisy_frac, augment=True, noise=NoiseConfig())
        x = torch.from_numpy(batch.inputs)
        terms = self_supervised_losses(model, x, gen, ramped_weights(weights, step, args.warmup_steps), prior,
                                       turn_about_body=args.turn_about_body)
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        # measurement only: the 3D of the window never reaches the loss
        target = torch.from_numpy(batch.targets[:, off:off + terms["lifted"].shape[1]])
        monitor = torch.linalg.vector_norm(terms["lifted"].detach() - target, dim=-1).mean().item() * 1000
        for name, value in terms.items():
            if name != "lifted":
                sums[name] = sums.get(name, 0.0) + float(value.detach())
        sums["monitor_mpjpe_mm"] = sums.get("monitor_mpjpe_mm", 0.0) + monitor
        count += 1
        if step % args.log_every == 0:
            log({"step": step, "lr": lr, **{k: v / count for k, v in sums.items()},
                 "s_per_step": (time.time() - t_log) / count})
            sums, count, t_log = {}, 0, time.time()
        if step % args.snapshot_every == 0 or step == args.steps:
            torch.save({"model": model.state_dict(), "config": config, "step": step, "format": "hpe3d-lifter-v1",
                        "training": "2d-only"}, run / f"step_{step:06d}.pt")
        if args.eval_every and (step % args.eval_every == 0 or step == args.steps):
            t0 = time.time()
            clean = evaluate(model, data, val_takes, noisy=False)["overall"]
            log({"step": step, "val_clean_mpjpe": clean["mpjpe"], "val_clean_pmpjpe": clean["p_mpjpe"],
                 "val_s": time.time() - t0})
        if time.time() - t_ckpt > 60 * args.checkpoint_minutes or step == args.steps:
            save_last()
            t_ckpt = time.time()
    if args.out is not None:
        snaps = sorted(run.glob("step_*.pt"))[-args.average:]
        out = average_snapshots(snaps)
        out["loss_weights"] = weights.as_dict()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(out, args.out)
        print(f"wrote {args.out} = mean of {[p.name for p in snaps]}", flush=True)


if __name__ == "__main__":
    main()
