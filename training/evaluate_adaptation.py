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

Each figure is kept under ``--cache`` keyed by the weights file's SHA-256, the data set (name and a digest of its
joints), the 2D condition and the seed, so a later run with the same files prints the same figures without measuring again (``--cache ''``
measures everything).
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch

from services.lifter3d.lift import DEFAULT_WEIGHTS, load_lifter
from training.cmu import load_cmu
from training.dataset import MocapData
from training.evaluate import EVAL_SEED, evaluate

TWO_D_ONLY_WEIGHTS = DEFAULT_WEIGHTS.with_name("gastnet_2d_only_27f.pt")
DEFAULT_CACHE = Path(__file__).resolve().parent / "runs" / "evaluation_cache"


def data_digest(data: MocapData) -> str:
    """A short digest of a data set's joints and split: a figure measured on other data is not reused."""
    h = hashlib.sha256(data.h36m17.tobytes())
    h.update(data.lengths.tobytes())
    h.update(data.validation.tobytes())
    return h.hexdigest()[:12]


def measured(path: Path, set_name: str, data, noisy: bool, cache: Path | None) -> dict:
    """:func:`training.evaluate.evaluate` of the weights at ``path``, from ``cache`` when measured before (on the
    same weights, the same data, 2D condition and seed)."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    key = (f"{digest}_{set_name.replace(' ', '-')}_{data_digest(data)}_{'noisy' if noisy else 'clean'}_"
           f"{EVAL_SEED}.json")
    if cache is not None and (cache / key).exists():
        return json.loads((cache / key).read_text())
    result = evaluate(load_lifter(path), data, noisy=noisy, seed=EVAL_SEED)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        (cache / key).write_text(json.dumps(result))
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--supervised", type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument("--two-d-only", type=Path, default=TWO_D_ONLY_WEIGHTS)
    p.add_argument("--adapted", type=Path, required=True, help="the supervised lifter adapted on CMU 2D")
    p.add_argument("--only", default="abc", help="which of (a), (b), (c) to measure and print (default all)")
    p.add_argument("--conditions", default="clean,noisy",
                   help="which 2D to measure on, comma-separated: clean, noisy (default both)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None, help="also write every figure (per action too) here")
    p.add_argument("--cache", default=str(DEFAULT_CACHE), help="folder of figures already measured ('' = none)")
    args = p.parse_args(argv)
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    if not conditions or set(conditions) - {"clean", "noisy"}:
        p.error(f"--conditions takes clean and/or noisy, not {args.conditions!r}")
    torch.set_num_threads(args.threads)
    sets = {"CMU held-out": load_cmu(), "Bandai validation": MocapData.load()}
    models = {name: path for name, path in (("(a) supervised", args.supervised), ("(b) 2D-only", args.two_d_only),
                                           ("(c) adapted", args.adapted)) if name[1] in args.only}
    results: dict[str, dict] = {}
    cache = Path(args.cache) if args.cache else None
    for model_name, path in models.items():
        for set_name, data in sets.items():
            for noisy in [c == "noisy" for c in conditions]:
                key = f"{model_name}|{set_name}|{'noisy' if noisy else 'clean'}"
                results[key] = measured(path, set_name, data, noisy, cache)
                o = results[key]["overall"]
                print(f"{key}: MPJPE {o['mpjpe']:.1f}  P-MPJPE {o['p_mpjpe']:.1f}  N-MPJPE {o['n_mpjpe']:.1f}  "
                      f"({o['frames']} frames)", flush=True)
    print()
    print("MPJPE / P-MPJPE / N-MPJPE in mm, 17 joints, root-aligned, raw network output (flip-averaged)")
    cols = [(s, c) for s in sets for c in conditions]
    print(f"{'lifter':28s}" + "".join(f" | {s + ' ' + c:>26s}" for s, c in cols))
    for model_name, path in models.items():
        row = f"{model_name + ' ' + path.name:28.28s}"
        for s, c in cols:
            o = results[f"{model_name}|{s}|{c}"]["overall"]
            row += f" | {o['mpjpe']:8.1f} / {o['p_mpjpe']:5.1f} / {o['n_mpjpe']:5.1f}"
        print(row)
    print()
    print(f"CMU held-out per motion, {conditions[0]} 2D, MPJPE / N-MPJPE:")
    first = results[f"{next(iter(models))}|CMU held-out|{conditions[0]}"]["per_action"]
    for action, row in first.items():
        print(f"  {action:36s} ({row['frames']:4d} frames)" + "".join(
            f" | {name[:3]} {results[f'{name}|CMU held-out|{conditions[0]}']['per_action'][action]['mpjpe']:6.1f} / "
            f"{results[f'{name}|CMU held-out|{conditions[0]}']['per_action'][action]['n_mpjpe']:6.1f}"
            for name in models))
    print()
    for s, c in cols if {"a", "c"} <= set(args.only) else []:
        sup = results[f"(a) supervised|{s}|{c}"]["overall"]["mpjpe"]
        ada = results[f"(c) adapted|{s}|{c}"]["overall"]["mpjpe"]
        print(f"adapted vs supervised, {s}, {c}: MPJPE {sup:.1f} -> {ada:.1f} mm ({100 * (ada - sup) / sup:+.1f} %)")
    if args.json:
        args.json.write_text(json.dumps({k: v for k, v in results.items()}, indent=1))


if __name__ == "__main__":
    main()
