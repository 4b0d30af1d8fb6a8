"""Sanity check of the lifter on real HRNet keypoints (GAST-Net's baseball demo, 277 frames, COCO-17).

    python -m training.check_real [--weights W] [--keypoints K] [--width 1920 --height 1080]
        [--picture OUT.jpg [--reference VIDEO] [--frames 60,130,170,230]]

The JSON (GAST-Net demo format: ``{"data": [{"frame_index", "skeleton": [{"pose", "score", "bbox"}]}]}``) records
no frame size; its coordinates span about x 384-894, y 157-798 px, which fits the 1920x1080 frame GAST-Net's
demo assumes, so that is the default. Prints:

* per-bone length statistics of the lifted 3D poses (a real person's bones do not change length: std should be
  below 5 % of the mean), and
* how well the feet sit on one ground plane when the whole sequence gets a single vertical offset
  (``ground_mode="sequence"``): height of the lower ankle above the plane per frame.

``--picture`` also writes a comparison image: for each listed frame (1-based, as in the JSON), the frame of a
reference video (default: GAST-Net's own published render of these keypoints) on the left and our grounded 3D
pose of the same frame, drawn by the renderer's 3D view, on the right.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from services.common.skeletons import H36M17
from services.lifter3d.lift import DEFAULT_WEIGHTS, ground, lift_sequence, load_lifter
from services.renderer.draw import Framing, View3D

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_KEYPOINTS = SHARED_DATA / "keypoints" / "baseball_hrnet_coco17.json"
DEFAULT_REFERENCE = SHARED_DATA / "reference" / "gastnet_baseball_render.mp4"


def load_demo_json(path: str | Path) -> np.ndarray:
    """First person of every frame of a GAST-Net demo keypoint JSON -> ``[F, 17, 3]`` (x, y, score);
    frames without a person get score 0 (filled in by :func:`lift_sequence`)."""
    info = json.loads(Path(path).read_text())
    frames = info["data"]
    out = np.zeros((max(f["frame_index"] for f in frames), 17, 3), dtype=np.float32)
    for f in frames:
        if f["skeleton"]:
            person = f["skeleton"][0]
            out[f["frame_index"] - 1, :, :2] = np.asarray(person["pose"], dtype=np.float32)
            out[f["frame_index"] - 1, :, 2] = np.asarray(person["score"], dtype=np.float32).reshape(-1)
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="lifter checkpoint (ours or official)")
    p.add_argument("--keypoints", default=str(DEFAULT_KEYPOINTS), help="GAST-Net demo keypoint JSON")
    p.add_argument("--width", type=float, default=1920, help="frame width in pixels")
    p.add_argument("--height", type=float, default=1080, help="frame height in pixels")
    p.add_argument("--picture", type=Path, default=None, help="write the reference-vs-ours comparison image here")
    p.add_argument("--reference", default=str(DEFAULT_REFERENCE), help="reference video for --picture")
    p.add_argument("--frames", default="60,130,170,230", help="1-based frame numbers for --picture")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    kp = load_demo_json(args.keypoints)
    print(f"{args.keypoints}: {len(kp)} frames, x {kp[..., 0].min():.0f}-{kp[..., 0].max():.0f} px, "
          f"y {kp[..., 1].min():.0f}-{kp[..., 1].max():.0f} px, scores {kp[..., 2].min():.2f}-{kp[..., 2].max():.2f}; "
          f"assumed frame {args.width:.0f}x{args.height:.0f}")
    model = load_lifter(args.weights)
    res = lift_sequence(kp, args.width, args.height, model)
    report: dict = {"bones": {}, "pitch_deg": res.pitch_deg}
    print(f"weights {args.weights}")
    print("bone lengths: raw network output | after lift_sequence's bone-length fixing (the shipped output)")
    print(f"{'bone':34s} {'mean cm':>8s} {'std cm':>7s} {'std/mean':>8s} | {'std/mean':>8s}")
    for a, b in H36M17.bones:
        length = np.linalg.norm(res.camera_raw[:, a] - res.camera_raw[:, b], axis=-1) * 100
        fixed = np.linalg.norm(res.camera[:, a] - res.camera[:, b], axis=-1) * 100
        rel, rel_fixed = float(length.std() / length.mean()), float(fixed.std() / fixed.mean())
        name = f"{H36M17.joints[a]}-{H36M17.joints[b]}"
        report["bones"][name] = {"mean_cm": float(length.mean()), "std_cm": float(length.std()), "rel": rel,
                                 "rel_fixed": rel_fixed}
        print(f"{name:34s} {length.mean():8.1f} {length.std():7.2f} {100 * rel:7.1f}% | {100 * rel_fixed:7.1f}%")
    worst = max(v["rel"] for v in report["bones"].values())
    worst_fixed = max(v["rel_fixed"] for v in report["bones"].values())
    report["worst_rel"], report["worst_rel_fixed"] = worst, worst_fixed
    print(f"worst bone std/mean: raw {100 * worst:.1f}% ({'OK' if worst < 0.05 else 'ABOVE'} the 5% bar), "
          f"shipped output {100 * worst_fixed:.1f}%; median raw "
          f"{100 * np.median([v['rel'] for v in report['bones'].values()]):.1f}%")
    seq = ground(res.world, "sequence")
    ankles = [H36M17.index("left_ankle"), H36M17.index("right_ankle")]
    lowest = seq[:, ankles, 1].min(axis=1) * 100
    report["foot_height_cm"] = {"median": float(np.median(lowest)), "p90": float(np.percentile(lowest, 90)),
                                "max": float(lowest.max()), "within_5cm": float((lowest < 5).mean())}
    print(f"estimated camera pitch {res.pitch_deg:.1f} deg (positive: looking down)")
    print(f"one ground plane for the sequence: lower ankle above the plane median {np.median(lowest):.1f} cm, "
          f"90th pct {np.percentile(lowest, 90):.1f} cm, max {lowest.max():.1f} cm; "
          f"frames within 5 cm {100 * (lowest < 5).mean():.0f}%")
    frame = res.grounded[:, ankles, 1].min(axis=1)
    print(f"grounded output (per-frame foot contact): lower ankle height max {100 * np.abs(frame).max():.2f} cm")
    if args.picture is not None:
        frames = [int(f) for f in args.frames.split(",")]
        write_comparison(args.picture, args.reference, res.grounded, frames)
        print(f"comparison picture (reference | ours) of frames {frames} -> {args.picture}")
    return report


def write_comparison(path: Path, reference: str | Path, grounded: np.ndarray, frames: list[int]) -> None:
    """One row per frame: the reference video's frame, then our grounded 3D pose ``grounded[frame - 1]``
    in a square panel as tall as the reference frame, with the same fixed view for every row."""
    capture = cv2.VideoCapture(str(reference))
    if not capture.isOpened():
        raise FileNotFoundError(f"cannot open the reference video {reference}")
    rows = []
    try:
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        centre = np.median(grounded[:, 0, [0, 2]], axis=0)
        fixed = Framing(np.tile([centre[0], 0.9, centre[1]], (len(grounded), 1)), np.full(len(grounded), 2.4))
        view = View3D(height, fixed)
        for number in frames:
            capture.set(cv2.CAP_PROP_POS_FRAMES, number - 1)
            ok, left = capture.read()
            if not ok:
                raise ValueError(f"{reference} has no frame {number}")
            right = view.render(number - 1, [(0, grounded[number - 1])])
            cv2.putText(right, f"hpe3d, frame {number}", (10, height - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                        (220, 220, 220), 1, cv2.LINE_AA)
            cv2.putText(left, "reference", (10, height - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1,
                        cv2.LINE_AA)
            rows.append(np.concatenate([left, right], axis=1))
    finally:
        capture.release()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.concatenate(rows, axis=0), [cv2.IMWRITE_JPEG_QUALITY, 88]):
        raise OSError(f"could not write {path}")


if __name__ == "__main__":
    main()
