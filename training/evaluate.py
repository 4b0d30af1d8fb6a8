"""Validation of lifters on the held-out Bandai takes: MPJPE and P-MPJPE in millimetres.

Every validation take is cut into 5-second clips (150 frames), each filmed by its own virtual camera drawn like
in training from a generator seeded with ``seed``, the take and the clip, so the numbers are reproducible and
every model, clean or noisy, sees the same cameras. "clean" feeds exact projections, "noisy" feeds detector-like noise
(:func:`training.dataset.add_detector_noise`) after the same clean-up inference applies. The sequence
is edge-padded by the receptive field so every frame gets a prediction and the mirrored input is averaged in,
as :mod:`services.lifter3d.lift` does. ``--fix-bones`` also applies lift's bone-length fixing (every bone set to
its median length over the clip), which is what the service outputs; without it the raw network output is scored.
Errors are over all 17 Human3.6M joints after root (pelvis) alignment.

    python -m training.evaluate --weights services/lifter3d/weights/gastnet_bandai_27f.pt \
        --weights training/weights/baseline_bandai_mlp.pt
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from services.common.skeletons import H36M17
from training.dataset import MocapData, make_batch, sample_cameras
from services.lifter3d.lift import fix_bone_lengths, load_lifter
from services.lifter3d.model import TemporalLifterBase

EVAL_SEED = 1234
CLIP_FRAMES = 150  # 5 s at 30 fps


def procrustes_align(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Align ``pred [N, J, 3]`` to ``gt`` per frame with the best similarity transform (rotation, scale, shift)."""
    mu_p, mu_g = pred.mean(axis=1, keepdims=True), gt.mean(axis=1, keepdims=True)
    p, g = pred - mu_p, gt - mu_g
    norm_p = np.linalg.norm(p, axis=(1, 2), keepdims=True) + 1e-9
    norm_g = np.linalg.norm(g, axis=(1, 2), keepdims=True) + 1e-9
    p, g = p / norm_p, g / norm_g
    u, s, vt = np.linalg.svd(np.einsum("nji,njk->nik", g, p))  # [N, 3, 3] = g^T p
    v = np.swapaxes(vt, 1, 2)
    r = v @ np.swapaxes(u, 1, 2)
    det = np.sign(np.linalg.det(r))
    v[:, :, -1] *= det[:, None]
    s[:, -1] *= det
    r = v @ np.swapaxes(u, 1, 2)
    scale = s.sum(axis=1)[:, None, None] * norm_g / norm_p
    return scale * (pred - mu_p) @ r + mu_g


def scale_align(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``pred [N, J, 3]`` (root-aligned) times the per-frame scale that best fits ``gt`` (least squares): the
    alignment of N-MPJPE (Rhodin et al. 2018), which forgives a wrong overall size and nothing else."""
    scale = (pred * gt).sum(axis=(1, 2)) / np.maximum((pred * pred).sum(axis=(1, 2)), 1e-12)
    return pred * scale[:, None, None]


def mpjpe(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-frame mean joint error ``[N]`` in the input unit."""
    return np.linalg.norm(pred - gt, axis=-1).mean(axis=-1)


@torch.no_grad()
def predict(model: TemporalLifterBase, inputs: np.ndarray, device: str = "cpu", flip: bool = True) -> np.ndarray:
    """Run a lifter over whole sequences ``[B, F, 17, 2]`` with edge padding -> ``[B, F, 17, 3]``.

    With ``flip`` the mirrored input is lifted too and the un-mirrored result averaged in, as
    :func:`services.lifter3d.lift.lift_sequence` does.
    """
    rf = model.receptive_field()
    left = model.output_offset()
    right = rf - 1 - left
    padded = np.pad(inputs, ((0, 0), (left, right), (0, 0), (0, 0)), mode="edge")
    model.eval()
    out = model(torch.from_numpy(padded).float().to(device)).cpu().numpy()
    if flip:
        mirrored = padded[:, :, H36M17.flip_permutation] * np.array([-1.0, 1.0], dtype=np.float32)
        back = model(torch.from_numpy(mirrored).float().to(device)).cpu().numpy()
        out = (out + back[:, :, H36M17.flip_permutation] * np.array([-1.0, 1.0, 1.0], dtype=np.float32)) / 2
    return out


def clip_errors(model: TemporalLifterBase, inputs: np.ndarray, targets: np.ndarray, device: str = "cpu",
                fix_bones: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame MPJPE, P-MPJPE and N-MPJPE (mm) of ``model`` on one clip: ``inputs [1, F, 17, 2]``
    (normalised 2D, as ``make_batch`` gives them), ``targets [F, 17, 3]`` (root-relative, metres)."""
    pred = predict(model, inputs, device)[0]
    pred = pred - pred[:, :1]
    if fix_bones:
        pred = fix_bone_lengths(pred)
    return (mpjpe(pred, targets) * 1000, mpjpe(procrustes_align(pred, targets), targets) * 1000,
            mpjpe(scale_align(pred, targets), targets) * 1000)


def evaluation_clips(data: MocapData, takes: np.ndarray | None = None, noisy: bool = False, seed: int = EVAL_SEED,
                     clip: int = CLIP_FRAMES):
    """The clips :func:`evaluate` scores, as ``(take index, batch)`` pairs (``batch`` from
    :func:`training.dataset.make_batch`, one clip): each take (default: all validation takes) cut into consecutive
    clips of ``clip`` frames, each filmed by its own virtual camera drawn from ``(seed, take, clip)``."""
    takes = data.takes(validation=True) if takes is None else takes
    for i in takes:
        n = int(data.lengths[i])
        for c, start in enumerate(range(0, n, clip)):
            sl = slice(start, min(n, start + clip))
            coco = data.take(i, "coco17")[None, sl].astype(np.float64)
            h36 = data.take(i, "h36m17")[None, sl]
            # the camera depends only on (seed, take, clip): clean and noisy runs, and all models, share it
            points = np.concatenate([coco, h36[:, :, [H36M17.index(j) for j in ("spine", "thorax", "head_top")]]], 2)
            cams = sample_cameras(np.random.default_rng([seed, int(i), c]), points)
            rng = np.random.default_rng([seed, int(i), c, 1])
            yield i, make_batch(rng, coco, h36, noisy=noisy, augment=False, cams=cams)


def evaluate(model: TemporalLifterBase, data: MocapData, takes: np.ndarray | None = None, noisy: bool = False,
             seed: int = EVAL_SEED, device: str = "cpu", clip: int = CLIP_FRAMES, fix_bones: bool = False) -> dict:
    """MPJPE / P-MPJPE / N-MPJPE (mm) of ``model`` on ``takes`` (default: all validation takes).

    Each take is cut into consecutive clips of ``clip`` frames (the last one may be shorter; a take shorter
    than ``clip`` is one clip); every clip is a separate "video" with its own virtual camera framing the person
    (drawn like in training, from a generator seeded by ``seed``, the take and the clip), so every frame of
    every take counts once. The clean and the noisy run see the same cameras. Returns
    ``{"overall": {"mpjpe", "p_mpjpe", "n_mpjpe", "frames"}, "per_action": {...}}`` (``n_mpjpe``: after one
    scale per frame, :func:`scale_align`); frames weight the means. ``fix_bones`` scores the output of
    :func:`services.lifter3d.lift.fix_bone_lengths` (per clip) instead of the raw network output.
    """
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0, 0.0])
    for i, batch in evaluation_clips(data, takes, noisy, seed, clip):
        e, pe, ne = clip_errors(model, batch.inputs, batch.targets[0], device, fix_bones)
        action = f"{data.datasets[i]}/{data.actions[i]}"
        for key in (action, "overall"):
            sums[key][0] += e.sum()
            sums[key][1] += pe.sum()
            sums[key][2] += len(e)
            sums[key][3] += ne.sum()
    table = {k: {"mpjpe": v[0] / v[2], "p_mpjpe": v[1] / v[2], "n_mpjpe": v[3] / v[2], "frames": v[2]}
             for k, v in sums.items()}
    overall = table.pop("overall")
    return {"overall": overall, "per_action": dict(sorted(table.items()))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", action="append", required=True, help="checkpoint(s) to evaluate")
    parser.add_argument("--seed", type=int, default=EVAL_SEED, help="camera/noise seed")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--fix-bones", action="store_true",
                        help="score the bone-length-fixed output (as the service returns) instead of the raw one")
    parser.add_argument("--json", type=Path, default=None, help="also write all figures to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = MocapData.load()
    results = {}
    for path in args.weights:
        model = load_lifter(path)  # ours or an official GAST-Net checkpoint
        for noisy in (False, True):
            res = evaluate(model, data, noisy=noisy, seed=args.seed, fix_bones=args.fix_bones)
            results[f"{Path(path).name}|{'noisy' if noisy else 'clean'}"] = res
    names = list(results)
    actions = list(next(iter(results.values()))["per_action"])
    header = f"{'action':32s}" + "".join(f" | {n.split('|')[0][:22]:>22s} {n.split('|')[1]:>5s}" for n in names)
    print(f"MPJPE / P-MPJPE in mm, validation takes, root-aligned, 17 joints; "
          f"{'bone-length-fixed output' if args.fix_bones else 'raw network output'}")
    print(header)
    for a in actions + ["OVERALL"]:
        row = f"{a:32s}"
        for n in names:
            r = results[n]["overall"] if a == "OVERALL" else results[n]["per_action"][a]
            row += f" | {r['mpjpe']:13.1f} / {r['p_mpjpe']:5.1f}"
        print(row)
    print("N-MPJPE (root-aligned, then one scale per frame): " + ", ".join(
        f"{n.split('|')[0]} {n.split('|')[1]} {results[n]['overall']['n_mpjpe']:.1f}" for n in names))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
