"""Which lifter does best on a single frame (a photo)? MPJPE and P-MPJPE in millimetres.

Every ``--stride``-th frame of every validation take (split of :mod:`training.dataset`) is a separate photo with
its own virtual camera, drawn like in training from a generator seeded by ``--seed`` (all models and both
2D conditions see the same cameras). Each lifter gets that one frame alone, edge-padded to its receptive field
(a temporal model then sees a motionless person), with the mirrored input averaged in, as
:func:`services.lifter3d.lift.lift_sequence` does for a one-frame track. "clean" feeds exact projections,
"noisy" detector-like noise (:func:`training.dataset.add_detector_noise` on one frame: jitter, misses, swaps).
Errors over all 17 Human3.6M joints after root alignment (MPJPE) and after a per-frame similarity transform
(P-MPJPE).

    python -m training.evaluate_single_frame --weights services/lifter3d/weights/gastnet_bandai_27f.pt \
        --weights training/weights/baseline_bandai_mlp.pt
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from services.common.skeletons import H36M17
from services.lifter3d.lift import load_lifter
from training.dataset import MocapData, make_batch, sample_cameras
from training.evaluate import mpjpe, predict, procrustes_align

EVAL_SEED = 2468


def single_frames(data: MocapData, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """COCO-17 and H36M-17 world joints ``[N, 1, 17, 3]`` of every ``stride``-th validation frame."""
    idx = np.concatenate([data.starts[i] + np.arange(0, data.lengths[i], stride)
                          for i in data.takes(validation=True)])
    return data.coco17[idx][:, None].astype(np.float64), data.h36m17[idx][:, None]


def evaluate(models: dict[str, torch.nn.Module], coco: np.ndarray, h36m: np.ndarray, seed: int,
             noisy: bool) -> dict[str, dict[str, float]]:
    """``{model name: {"mpjpe", "p_mpjpe", "frames"}}`` on the given one-frame samples."""
    h = H36M17.index
    points = np.concatenate([coco, h36m[:, :, [h("spine"), h("thorax"), h("head_top")]]], axis=2)
    cams = sample_cameras(np.random.default_rng([seed, 0]), points)
    batch = make_batch(np.random.default_rng([seed, 1]), coco, h36m, noisy=noisy, augment=False, cams=cams)
    gt = batch.targets[:, 0]
    out = {}
    for name, model in models.items():
        pred = np.concatenate([predict(model, batch.inputs[k:k + 512]) for k in range(0, len(gt), 512)])[:, 0]
        pred = pred - pred[:, :1]
        out[name] = {"mpjpe": float(mpjpe(pred, gt).mean() * 1000),
                     "p_mpjpe": float(mpjpe(procrustes_align(pred, gt), gt).mean() * 1000), "frames": len(gt)}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", action="append", required=True, help="checkpoint(s) to compare")
    parser.add_argument("--stride", type=int, default=10, help="take every N-th validation frame")
    parser.add_argument("--seed", type=int, default=EVAL_SEED)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = MocapData.load()
    coco, h36m = single_frames(data, args.stride)
    models = {Path(p).name: load_lifter(p) for p in args.weights}
    results = {cond: evaluate(models, coco, h36m, args.seed, cond == "noisy") for cond in ("clean", "noisy")}
    print(f"Single validation frames ({len(coco)}, every {args.stride}th), each its own camera; "
          f"MPJPE / P-MPJPE in mm")
    for name in models:
        row = " | ".join(f"{cond} {results[cond][name]['mpjpe']:6.1f} / {results[cond][name]['p_mpjpe']:5.1f}"
                         for cond in results)
        print(f"{name:32s} {row}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
