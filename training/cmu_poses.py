"""Stand-ins for a user's videos: the CMU adaptation takes filmed by virtual cameras, written as poses.json files
holding 2D only (what ``hpe3d adapt`` reads).

    python -m training.cmu_poses --out training/runs/cmu_poses

Every adaptation take (:func:`training.cmu.load_cmu`, ``validation == False``) is cut into 5-second clips (150
frames at 30 fps); each clip gets its own virtual camera drawn as in training (:func:`training.dataset.sample_cameras`)
and its COCO-17 joints are projected to pixels, then given detector-like noise
(:func:`training.dataset.add_detector_noise`; ``--clean`` leaves it out). One poses.json per clip, one person
(track 0), no 3D. It also prints the adaptation takes' mean limb length from their 3D: the one number a user who
knows their people's size would give ``hpe3d adapt --limb-length-m`` (the files carry no 3D). Seeded (``--seed``,
take and clip), so the files are reproducible; the seed differs from the evaluation's, so no camera is shared with
the held-out measurement.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from services.common.skeletons import COCO17, H36M17
from services.lifter3d.model import LIMB_BONES
from training.cmu import load_cmu
from training.dataset import NoiseConfig, add_detector_noise, sample_cameras
from training.evaluate import CLIP_FRAMES

POSES_SEED = 777


def clip_document(coco_world: np.ndarray, h36m_world: np.ndarray, rng: np.random.Generator, noisy: bool) -> dict:
    """A minimal poses.json (schema 2.0 fields that 2D readers use) of one clip ``[F, 17, 3]`` world joints."""
    extra = h36m_world[:, [H36M17.index(j) for j in ("spine", "thorax", "head_top")]]
    points = np.concatenate([coco_world, extra], axis=1)[None].astype(np.float64)
    cams = sample_cameras(rng, points)
    pix = cams.project(cams.to_camera(points[:, :, :17]))
    kp = add_detector_noise(rng, pix, NoiseConfig())[0] if noisy else \
        np.concatenate([pix[0], np.ones(pix.shape[1:3] + (1,))], axis=-1)
    width, height = int(cams.width[0]), int(cams.height[0])
    return {
        "schema_version": "2.0",
        "video": {"width": width, "height": height, "fps": 30.0, "frame_count": len(kp)},
        "joints_2d": list(COCO17.joints),
        "frames": [{"index": i, "timestamp_s": round(i / 30.0, 6),
                    "persons": [{"track_id": 0, "keypoints_2d": [[round(float(v), 2) for v in j] for j in frame]}]}
                   for i, frame in enumerate(kp)],
    }


def mean_limb_length_m(h36m: np.ndarray) -> float:
    """Mean length (metres) of the eight limb bones (:data:`services.lifter3d.model.LIMB_BONES`) over ``[N, 17, 3]``
    Human3.6M joints."""
    parents, children = zip(*(H36M17.bones[b] for b in LIMB_BONES))
    return float(np.linalg.norm(h36m[:, list(children)] - h36m[:, list(parents)], axis=-1).mean())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder for the poses.json files")
    p.add_argument("--clean", action="store_true", help="exact projections, no detector-like noise")
    p.add_argument("--seed", type=int, default=POSES_SEED)
    args = p.parse_args(argv)
    data = load_cmu()
    args.out.mkdir(parents=True, exist_ok=True)
    written = 0
    for i in data.takes(validation=False):
        n = int(data.lengths[i])
        for c, start in enumerate(range(0, n, CLIP_FRAMES)):
            sl = slice(start, min(n, start + CLIP_FRAMES))
            if sl.stop - sl.start < 27:
                continue
            rng = np.random.default_rng([args.seed, int(i), c])
            doc = clip_document(data.take(i, "coco17")[sl], data.take(i, "h36m17")[sl], rng, not args.clean)
            (args.out / f"{data.names[i]}_clip{c:02d}.poses.json").write_text(json.dumps(doc, separators=(",", ":")))
            written += 1
    h36m = np.concatenate([data.take(i, "h36m17") for i in data.takes(validation=False)])
    print(f"their people's mean limb length (3D, for `hpe3d adapt --limb-length-m`): "
          f"{mean_limb_length_m(h36m):.3f} m")
    print(f"wrote {written} poses.json files ({'clean' if args.clean else 'noisy'} 2D) of "
          f"{len(data.takes(validation=False))} adaptation takes to {args.out}")


if __name__ == "__main__":
    main()
