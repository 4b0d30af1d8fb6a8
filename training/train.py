"""Train the 2D -> 3D lifter (GAST-Net, or the per-frame MLP baseline) on the Bandai-Namco motion capture.

    python -m training.train --out services/lifter3d/weights/gastnet_bandai_27f.pt --epochs 40
    python -m training.train --model baseline --out training/weights/baseline_bandai_mlp.pt

Samples come from :mod:`training.dataset` (virtual cameras and 2D noise drawn for every batch). Each
GAST-Net step feeds windows of ``26 + L`` frames and supervises all ``L`` output frames. Seeded; resumable: the
full state (model, optimiser, epoch, generator) is written to ``<out>.last.pt`` after every epoch and on
SIGINT/SIGTERM, and a later run with the same ``--out`` continues from it. ``<out>`` itself holds only the
weights and model config of the epoch with the best validation MPJPE (noisy 2D), which is what ships.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from services.common.skeletons import H36M17
from training.dataset import MocapData, NoiseConfig, WindowSampler, make_batch
from training.evaluate import evaluate
from training.interrupt import save_on_signal
from services.lifter3d.model import build_model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="weights file to write (best epoch)")
    p.add_argument("--model", choices=("gastnet", "baseline"), default="gastnet", help="which lifter")
    p.add_argument("--channels", type=int, default=48, help="GAST-Net width (official 27-frame model: 128)")
    p.add_argument("--causal", action="store_true", help="train the causal (streaming) GAST-Net variant")
    p.add_argument("--hidden", type=int, default=1024, help="baseline MLP width")
    p.add_argument("--epochs", type=int, default=30, help="epochs to run in total (resumed runs count on)")
    p.add_argument("--steps", type=int, default=200, help="optimiser steps per epoch")
    p.add_argument("--batch", type=int, default=24, help="windows per step")
    p.add_argument("--frames-out", type=int, default=32, help="supervised output frames per window (L)")
    p.add_argument("--lr", type=float, default=1e-3, help="initial learning rate (AdamW)")
    p.add_argument("--lr-final", type=float, default=5e-5, help="learning rate at the last epoch (cosine)")
    p.add_argument("--noisy-frac", type=float, default=0.6, help="share of windows with detector noise")
    p.add_argument("--placement-prob", type=float, default=0.0,
                   help="share of windows whose 2D shoulders and hips sit where detectors put them")
    p.add_argument("--dropout", type=float, default=0.1, help="dropout probability")
    p.add_argument("--bone-weight", type=float, default=0.0,
                   help="weight of the bone-length loss (mean |predicted - true| length of the 16 bones, every frame)")
    p.add_argument("--init", type=Path, default=None,
                   help="start from these weights (same model shape; e.g. the non-causal file for a causal run); "
                        "ignored when resuming from <out>.last.pt")
    p.add_argument("--snapshots", action="store_true",
                   help="also keep each epoch's weights as <out>.eNNN.pt (for averaging with export)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (the machine is shared)")
    p.add_argument("--val-stride", type=int, default=3, help="validate on every n-th validation take per epoch")
    return p.parse_args(argv)


def model_config(args: argparse.Namespace) -> dict:
    if args.model == "baseline":
        return {"kind": "baseline", "hidden": args.hidden, "dropout": args.dropout}
    return {"kind": "gastnet", "channels": args.channels, "filter_widths": [3, 3, 3], "causal": args.causal,
            "dropout": args.dropout}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    config = model_config(args)
    model = build_model(config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    last = args.out.with_suffix(".last.pt")
    log_path = args.out.with_suffix(".log.jsonl")
    start_epoch, best, history = 0, math.inf, []
    if last.exists():
        state = torch.load(last, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_epoch, best, history = state["epoch"], state["best"], state["history"]
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        print(f"resumed from {last} at epoch {start_epoch} (best noisy val MPJPE {best:.1f} mm)")
    elif args.init is not None:
        model.load_state_dict(torch.load(args.init, map_location=device, weights_only=True)["model"])
        print(f"initialised from {args.init}")

    data = MocapData.load()
    rf, offset = model.receptive_field(), model.output_offset()
    window = rf - 1 + args.frames_out
    sampler = WindowSampler(data, data.takes(validation=False), window)
    val_takes = data.takes(validation=True)[:: args.val_stride]
    print(f"model {config} params {sum(p.numel() for p in model.parameters())} on {device}; "
          f"train takes {len(sampler.takes)}, val takes {len(val_takes)}; window {window} frames")

    epoch_box = {"epoch": start_epoch}

    def save_last() -> None:
        tmp = last.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch_box["epoch"],
                    "best": best, "history": history, "rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(), "config": config, "args": vars(args) | {"out": str(args.out)}},
                   tmp)
        tmp.replace(last)

    save_on_signal(save_last, lambda signum: print(
        f"signal {signum}: saved {last} ({epoch_box['epoch']} complete epochs) and stopping", flush=True))
    args.out.parent.mkdir(parents=True, exist_ok=True)

    for epoch in range(start_epoch, args.epochs):
        progress = epoch / max(1, args.epochs - 1)
        lr = args.lr_final + 0.5 * (args.lr - args.lr_final) * (1 + math.cos(math.pi * progress))
        for group in opt.param_groups:
            group["lr"] = lr
        model.train()
        t0, losses, mpjpes = time.time(), [], []
        bar = tqdm(range(args.steps), desc=f"epoch {epoch + 1}/{args.epochs}", mininterval=5, ncols=100)
        for _ in bar:
            coco, h36 = sampler.sample(rng, args.batch)
            noisy = rng.random() < args.noisy_frac
            batch = make_batch(rng, coco, h36, noisy=noisy, augment=True, noise=NoiseConfig(),
                               placement_prob=args.placement_prob)
            x = torch.from_numpy(batch.inputs).to(device)
            y = torch.from_numpy(batch.targets[:, offset:offset + args.frames_out]).to(device)
            pred = model(x)
            mpjpe = torch.linalg.vector_norm(pred - y, dim=-1).mean()
            loss = mpjpe
            if args.bone_weight > 0:
                loss = mpjpe + args.bone_weight * (bone_lengths(pred) - bone_lengths(y)).abs().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            losses.append(loss.item())
            mpjpes.append(mpjpe.item())
            bar.set_postfix(mpjpe_mm=f"{1000 * np.mean(mpjpes[-50:]):.1f}", lr=f"{lr:.1e}")
        train_s = time.time() - t0
        clean = evaluate(model, data, val_takes, noisy=False, device=device)["overall"]
        noisy_res = evaluate(model, data, val_takes, noisy=True, device=device)["overall"]
        record = {"epoch": epoch + 1, "lr": lr, "train_mpjpe_mm": 1000 * float(np.mean(mpjpes)),
                  "train_loss_mm": 1000 * float(np.mean(losses)),
                  "val_clean_mpjpe": clean["mpjpe"], "val_clean_pmpjpe": clean["p_mpjpe"],
                  "val_noisy_mpjpe": noisy_res["mpjpe"], "val_noisy_pmpjpe": noisy_res["p_mpjpe"],
                  "train_s": train_s, "val_s": time.time() - t0 - train_s}
        record = json.loads(json.dumps(record))  # plain floats (no numpy scalars in checkpoints)
        history.append(record)
        print(json.dumps(record), flush=True)
        with log_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        epoch_box["epoch"] = epoch + 1
        weights = {"model": model.state_dict(), "config": config, "epoch": epoch + 1, "val": record,
                   "format": "hpe3d-lifter-v1"}
        if noisy_res["mpjpe"] < best:
            best = noisy_res["mpjpe"]
            torch.save(weights, args.out)
            print(f"saved best -> {args.out}", flush=True)
        if args.snapshots:
            torch.save(weights, args.out.with_suffix(f".e{epoch + 1:03d}.pt"))
        save_last()


def bone_lengths(joints: torch.Tensor) -> torch.Tensor:
    """``[..., 17, 3]`` Human3.6M joints -> ``[..., 16]`` lengths of the bones in ``H36M17.bones``."""
    parents, children = zip(*H36M17.bones)
    return torch.linalg.vector_norm(joints[..., list(children), :] - joints[..., list(parents), :], dim=-1)


if __name__ == "__main__":
    main()
