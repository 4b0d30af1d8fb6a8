"""Lifter speed: seconds to lift one person's track of 1,000 frames with ``lift_sequence`` (the shipped
GAST-Net, flip-averaged, gap filling, smoothing, bone fixing and grounding included), as the lifter3d
stage lifts each track.

    .venv/bin/python bench/lifter.py [--frames 1000] [--repeat 3] [--threads 2]

The 2D track is MediaPipe's of the 24-frame test clip (tests/data/mediapipe_pose_24f.json) played back and
forth to the length asked for, so the input moves like a person. Prints the best of ``--repeat`` runs and
the load average (other work on the machine slows the figure).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for _p in (str(ROOT), str(ROOT / "proto")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from services.common.skeletons import blazepose33_to_coco17  # noqa: E402
from services.lifter3d.lift import DEFAULT_WEIGHTS, lift_sequence, load_lifter  # noqa: E402

TRACK_2D = ROOT / "tests" / "data" / "mediapipe_pose_24f.json"


def track_of(frames: int) -> np.ndarray:
    """COCO-17 x, y (640x360 pixels) and score ``[frames, 17, 3]``: the test clip's 2D, back and forth."""
    doc = json.loads(TRACK_2D.read_text())
    landmarks = np.array(doc["frames"], np.float32)
    coco = blazepose33_to_coco17(np.concatenate([landmarks[..., :2], np.full(landmarks.shape[:2] + (1,), 0.9,
                                                                             np.float32)], axis=-1))
    there_and_back = np.concatenate([coco, coco[::-1]])
    return np.resize(there_and_back, (frames,) + coco.shape[1:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    model = load_lifter(DEFAULT_WEIGHTS)
    track = track_of(args.frames)
    lift_sequence(track[:50], 640, 360, model)  # warm-up
    best = float("inf")
    for _ in range(args.repeat):
        started = time.perf_counter()
        lift_sequence(track, 640, 360, model)
        best = min(best, time.perf_counter() - started)
    print(f"lifter: {DEFAULT_WEIGHTS.name}, one track of {args.frames} frames with lift_sequence in {best:.2f} s "
          f"({args.frames / best:.0f} frames/s, best of {args.repeat}, {args.threads} threads); "
          f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
