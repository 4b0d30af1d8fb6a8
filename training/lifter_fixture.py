"""The lifter's test fixture: four 5 s clips of Bandai validation takes, as ``training.evaluate`` films them,
and the shipped lifter's error on them.

    python -m training.lifter_fixture            # print MPJPE / P-MPJPE of the shipped GAST-Net on the fixture
    python -m training.lifter_fixture --make     # rebuild tests/data/lifter_bandai_validation.npz (needs ../shared/data)

``--make`` takes the first 150 frames (or all, when fewer) of each take in ``TAKES`` (all validation takes: never used in
training) out of the mocap archives and films them exactly as ``training.evaluate`` does (the same virtual
camera and detector-noise seeds, from the take's index in the whole data set and the clip), so each clip's
error here is the one it contributes to the model card's validation table. The file holds the model inputs
(normalised Human3.6M-17 2D, clean and noisy) and the targets (root-relative camera-frame 3D, metres).
``tests/training/test_lifter_fixture.py`` holds the shipped weights to the figures this prints (plus a margin).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from services.common.skeletons import H36M17
from training.dataset import ARCHIVES, SHARED_MOCAP, is_validation_take, make_batch, sample_cameras, take_info
from training.evaluate import CLIP_FRAMES, EVAL_SEED, clip_errors

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "data" / "lifter_bandai_validation.npz"
SHIPPED = ROOT / "services" / "lifter3d" / "weights" / "gastnet_bandai_27f.pt"
TAKES = ("dataset-1_walk_proud_002", "dataset-2_run_normal_006", "dataset-2_walk_normal_006",
         "dataset-2_wave-left-hand_normal_006")


def archive_members(shared: Path = SHARED_MOCAP) -> list[tuple[str, str]]:
    """Every take's (archive, member path), in the order ``training.dataset.build_cache`` numbers them."""
    members = []
    for archive in ARCHIVES:
        listing = subprocess.run(["tar", "tJf", str(shared / archive)], capture_output=True, text=True, check=True)
        members += [(archive, m) for m in listing.stdout.split() if m.endswith(".bvh") and "/data/" in m
                    and m.count("/") == 2]
    return sorted(members, key=lambda am: am[1])


def make(shared: Path = SHARED_MOCAP, out: Path = FIXTURE) -> None:
    from training.mocap import take_joints

    members = archive_members(shared)
    names = [take_info(m)[0] for _, m in members]
    groups: dict[tuple[str, str], list[str]] = {}
    for n in names:
        groups.setdefault(take_info(n + ".bvh")[1:], []).append(n)
    for g in groups.values():
        g.sort()
    inputs = {"clean": [], "noisy": []}
    targets, indices = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for take in TAKES:
            i = names.index(take)
            if not is_validation_take(take, groups[take_info(take + ".bvh")[1:]]):
                raise ValueError(f"{take} is not a validation take")
            archive, member = members[i]
            subprocess.run(["tar", "xJf", str(shared / archive), "-C", tmp, member], check=True)
            joints = take_joints(Path(tmp) / member)
            sl = slice(0, CLIP_FRAMES)
            coco = joints["coco17"][None, sl].astype(np.float64)
            h36 = joints["h36m17"][None, sl]
            # as training.evaluate.evaluate films clip 0 of take i
            points = np.concatenate([coco, h36[:, :, [H36M17.index(j) for j in ("spine", "thorax", "head_top")]]], 2)
            for noisy in (False, True):
                cams = sample_cameras(np.random.default_rng([EVAL_SEED, i, 0]), points)
                rng = np.random.default_rng([EVAL_SEED, i, 0, 1])
                batch = make_batch(rng, coco, h36, noisy=noisy, augment=False, cams=cams)
                inputs["noisy" if noisy else "clean"].append(batch.inputs[0])
            targets.append(batch.targets[0])
            indices.append(i)
    lengths = [len(t) for t in targets]

    def padded(clips: list[np.ndarray]) -> np.ndarray:   # clips of a take shorter than 150 frames end early
        return np.stack([np.pad(c, [(0, CLIP_FRAMES - len(c))] + [(0, 0)] * (c.ndim - 1)) for c in clips])
    np.savez_compressed(out, takes=np.asarray(TAKES), take_index=np.asarray(indices), lengths=np.asarray(lengths),
                        inputs_clean=padded(inputs["clean"]), inputs_noisy=padded(inputs["noisy"]),
                        targets=padded(targets))
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")


def fixture_errors(weights: Path = SHIPPED, fixture: Path = FIXTURE) -> dict[str, tuple[float, float]]:
    """{"clean" | "noisy": (MPJPE, P-MPJPE)} in mm of the lifter ``weights`` over every frame of the fixture."""
    from services.lifter3d.lift import load_lifter

    model = load_lifter(weights)
    with np.load(fixture, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    out = {}
    for kind in ("clean", "noisy"):
        errors = [clip_errors(model, x[None, :n], y[:n])
                  for x, y, n in zip(data[f"inputs_{kind}"], data["targets"], data["lengths"])]
        out[kind] = (float(np.concatenate([e for e, _, _ in errors]).mean()),
                     float(np.concatenate([p for _, p, _ in errors]).mean()))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--make", action="store_true", help=f"rebuild {FIXTURE.name} from ../shared/data")
    parser.add_argument("--weights", type=Path, default=SHIPPED)
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(2)
    if args.make:
        make()
    with np.load(FIXTURE, allow_pickle=False) as z:
        takes, frames = list(z["takes"]), int(z["lengths"].sum())
    print(f"{args.weights.name} on {FIXTURE.name} ({len(takes)} validation clips, {frames} frames: "
          f"{', '.join(takes)}), MPJPE / P-MPJPE in mm, raw network output, root-aligned, 17 joints:")
    for kind, (e, pe) in fixture_errors(args.weights).items():
        print(f"  {kind}: {e:.1f} / {pe:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
