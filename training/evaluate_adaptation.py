"""Lifters in and out of their training domain: MPJPE / P-MPJPE / N-MPJPE on the held-out CMU takes and on the
Bandai-Namco validation takes, for the supervised lifter, the 2D-only lifter and the supervised lifter adapted on
the other CMU takes' 2D.

    python -m training.cmu_poses --out training/runs/cmu_poses                 # "the user's videos" (2D only)
    hpe3d adapt training/runs/cmu_poses/*.poses.json -o training/runs/adapted_cmu.pt
    python -m training.evaluate_adaptation --adapted training/runs/adapted_cmu.pt

Both data sets are measured by :func:`training.evaluate.evaluate` (5-second clips, one virtual camera per clip
drawn from a fixed seed, shared by every model; clean projections and detector-like noise; flip-averaged raw
network output; all 17 joints, root-aligned, millimetres). CMU: the 17 held-out takes of
:func:`training.cmu.load_cmu` (never adapted on; their cameras use the evaluation seed, the adaptation files
another). Bandai: the 122 validation takes. "change" is the adapted lifter's MPJPE against the supervised one's.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from services.lifter3d.lift import DEFAULT_WEIGHTS, load_lifter
from training.cmu import load_cmu
from training.dataset import MocapData
from training.evaluate import EVAL_SEED, evaluate

TWO_D_ONLY_WEIGHTS = DEFAULT_WEIGHTS.with_name("gastnet_2d_only_27f.pt")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--supervised", type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument("--two-d-only", type=Path, default=TWO_D_ONLY_WEIGHTS)
    p.add_argument("--adapted", type=Path, required=True, help="the supervised lifter adapted on CMU 2D")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None, help="also write every figure (per action too) here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    sets = {"CMU held-out": load_cmu(), "Bandai validation": MocapData.load()}
    models = {"(a) supervised": args.supervised, "(b) 2D-only": args.two_d_only, "(c) adapted": args.adapted}
    results: dict[str, dict] = {}
    for model_name, path in models.items():
        model = load_lifter(path)
        for set_name, data in sets.items():
            for noisy in (False, True):
                key = f"{model_name}|{set_name}|{'noisy' if noisy else 'clean'}"
                results[key] = evaluate(model, data, noisy=noisy, seed=EVAL_SEED)
                o = results[key]["overall"]
                print(f"{key}: MPJPE {o['mpjpe']:.1f}  P-MPJPE {o['p_mpjpe']:.1f}  N-MPJPE {o['n_mpjpe']:.1f}  "
                      f"({o['frames']} frames)", flush=True)
    print()
    print("MPJPE / P-MPJPE / N-MPJPE in mm, 17 joints, root-aligned, raw network output (flip-averaged)")
    cols = [(s, c) for s in sets for c in ("clean", "noisy")]
    print(f"{'lifter':28s}" + "".join(f" | {s + ' ' + c:>26s}" for s, c in cols))
    for model_name, path in models.items():
        row = f"{model_name + ' ' + path.name:28.28s}"
        for s, c in cols:
            o = results[f"{model_name}|{s}|{c}"]["overall"]
            row += f" | {o['mpjpe']:8.1f} / {o['p_mpjpe']:5.1f} / {o['n_mpjpe']:5.1f}"
        print(row)
    print()
    for s, c in cols:
        sup = results[f"(a) supervised|{s}|{c}"]["overall"]["mpjpe"]
        ada = results[f"(c) adapted|{s}|{c}"]["overall"]["mpjpe"]
        print(f"adapted vs supervised, {s}, {c}: MPJPE {sup:.1f} -> {ada:.1f} mm ({100 * (ada - sup) / sup:+.1f} %)")
    if args.json:
        args.json.write_text(json.dumps({k: v for k, v in results.items()}, indent=1))


if __name__ == "__main__":
    main()
