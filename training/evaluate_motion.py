"""Root motion on held-out mocap takes: root trajectory error (RTE) and foot sliding of the service's output.

Every validation take (split of :mod:`training.dataset`) is filmed whole, with its real root travel, by one
static virtual pinhole camera (1920 x 1080, horizontal field of view 45-70 degrees, 1-2 m high, from a random
direction, far enough back that every joint of the take stays inside the central 90 % of the frame; drawn from a
generator seeded by ``--seed`` and the take). Its COCO-17 projections -- exact ("clean") or with detector-like
noise ("noisy", :func:`training.dataset.add_detector_noise`, applied around the person's moving centre so the
noise scales with the person, not with the distance travelled) -- go through the very function the Lifter3D
service runs, :func:`services.lifter3d.video_lift.lift_frames` (tracking, lifting, camera, world placement,
contacts, foot pinning), with the focal-length prior, not the virtual camera's true focal length.

Figures:

* RTE: the predicted pelvis trajectory is aligned to the true one by one similarity transform per take
  (rotation, uniform scale, shift; Umeyama), then the mean pelvis distance is divided by the true pelvis's
  horizontal path length. Only takes that travel at least ``--min-travel`` metres count (bows and waves have
  no path to relate to).
* foot sliding: mean horizontal displacement per frame (cm) of the predicted ankle, in the predicted world
  frame (metres as the service outputs them), over consecutive frames in which the true foot is planted (true
  ankle within 3 cm of its lowest height and moving horizontally under 0.1 m/s). All takes count.
* contacts: precision and recall of the predicted ``foot_contacts`` against those true planted frames.
* camera: mean absolute error of the estimated pitch (degrees) and height (metres, relative to the true
  height: the similarity-free world is only as large as the lifted skeleton) of the camera.
* baseline: the pinned-at-origin output the service gave before root motion (``Track3D.grounded``: pelvis at
  x = z = 0, lower ankle on the floor in every frame), scored the same way.

    python -m training.evaluate_motion [--noisy] [--true-focal] [--takes N] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from hpe3d.v1 import common_pb2
from services.common.arrays import from_proto, to_proto
from services.common.skeletons import H36M17
from services.lifter3d.video_lift import Lifter, lift_frames, load_service_lifter
from training.dataset import Cameras, MocapData, add_detector_noise, look_rotation

EVAL_SEED = 4321
WIDTH, HEIGHT = 1920, 1080
ANKLES = (H36M17.index("left_ankle"), H36M17.index("right_ankle"))
PLANTED_HEIGHT_M = 0.03
PLANTED_SPEED_MPS = 0.1


def static_camera(rng: np.random.Generator, points: np.ndarray, margin: float = 0.9) -> Cameras:
    """One static camera that sees every point of a whole take ``points [F, J, 3]`` (world, y up).

    Horizontal FOV 45-70 deg, height 1-2 m, random azimuth, aimed at the centre of the take's bounding box;
    moved back in steps of 5 % until every point projects inside the central ``margin`` of the frame.
    """
    f = WIDTH / 2 / np.tan(np.deg2rad(rng.uniform(45, 70)) / 2)
    lo, hi = points.reshape(-1, 3).min(axis=0), points.reshape(-1, 3).max(axis=0)
    centre = (lo + hi) / 2
    azim = rng.uniform(0, 2 * np.pi)
    cam_h = rng.uniform(1.0, 2.0)
    dist = max(2.0, float(np.linalg.norm(hi - lo)))
    for _ in range(200):
        horiz = np.array([np.sin(azim), 0.0, np.cos(azim)]) * dist
        centre_cam = centre + horiz
        centre_cam[1] = cam_h
        R = look_rotation((centre - centre_cam)[None], np.array([[0.0, 1.0, 0.0]]))
        cam = Cameras(R, centre_cam[None], np.array([f]), np.array([float(WIDTH)]), np.array([float(HEIGHT)]))
        cp = cam.to_camera(points.reshape(1, -1, 3))
        px = cam.project(cp)[0]
        inside = (np.abs(px[:, 0] - WIDTH / 2) <= margin * WIDTH / 2) & \
                 (np.abs(px[:, 1] - HEIGHT / 2) <= margin * HEIGHT / 2) & (cp[0, :, 2] > 0.5)
        if inside.all():
            return cam
        dist *= 1.05
    return cam


def project_take(rng: np.random.Generator, cam: Cameras, coco_world: np.ndarray, noisy: bool) -> np.ndarray:
    """COCO-17 pixels and scores ``[F, 17, 3]`` of a take seen by ``cam``."""
    pix = cam.project(cam.to_camera(coco_world[None].astype(np.float64)))[0]
    if not noisy:
        return np.concatenate([pix, np.ones(pix.shape[:-1] + (1,))], axis=-1).astype(np.float32)
    centre = pix.mean(axis=1, keepdims=True)
    noisy_kp = add_detector_noise(rng, (pix - centre)[None])[0]
    noisy_kp[..., :2] += centre
    return noisy_kp


def frames_message(keypoints: np.ndarray) -> list[common_pb2.FramePoses2D]:
    """One detected person per frame, as the pose2d stage sends them."""
    return [common_pb2.FramePoses2D(frame_index=i, persons=[common_pb2.Person2D(
        track_id=0, score=1.0, coco17=to_proto(kp))]) for i, kp in enumerate(keypoints)]


def similarity_align(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``pred [N, 3]`` mapped by the similarity transform (rotation, scale, shift) that best fits ``gt``."""
    mp, mg = pred.mean(axis=0), gt.mean(axis=0)
    p, g = pred - mp, gt - mg
    var = (p ** 2).sum() / len(p)
    if var < 1e-12:
        return np.broadcast_to(mg, pred.shape).copy()
    u, s, vt = np.linalg.svd(g.T @ p / len(p))
    d = np.eye(3)
    d[2, 2] = np.sign(np.linalg.det(u @ vt))
    rot = u @ d @ vt
    scale = np.trace(np.diag(s) @ d) / var
    return scale * p @ rot.T + mg


def true_planted(gt_world: np.ndarray, fps: float) -> np.ndarray:
    """``[F, 2]`` (left, right) frames where the true ankle is low and slow."""
    ankles = gt_world[:, list(ANKLES)]
    low = ankles[..., 1] <= ankles[..., 1].min(axis=0) + PLANTED_HEIGHT_M
    speed = np.linalg.norm(np.gradient(ankles[..., [0, 2]], axis=0), axis=-1) * fps
    return low & (speed < PLANTED_SPEED_MPS)


def take_scores(pred_world: np.ndarray, pred_contacts: np.ndarray | None, gt_world: np.ndarray,
                fps: float) -> dict:
    """RTE (fraction), travel (m), sliding sums and contact counts of one take."""
    gt_root, pred_root = gt_world[:, 0].astype(np.float64), pred_world[:, 0].astype(np.float64)
    travel = float(np.linalg.norm(np.diff(gt_root[:, [0, 2]], axis=0), axis=1).sum())
    err = np.linalg.norm(similarity_align(pred_root, gt_root) - gt_root, axis=1).mean()
    planted = true_planted(gt_world, fps)
    both = planted[1:] & planted[:-1]
    step = np.linalg.norm(np.diff(pred_world[:, list(ANKLES)][..., [0, 2]], axis=0), axis=-1)
    out = {"rte": err / max(travel, 1e-9), "travel": travel, "slide_sum": float(step[both].sum()),
           "slide_n": int(both.sum())}
    if pred_contacts is not None:
        c = pred_contacts.astype(bool)
        out.update(tp=int((c & planted).sum()), fp=int((c & ~planted).sum()), fn=int((~c & planted).sum()))
    return out


def evaluate_take(lifter: Lifter, coco: np.ndarray, h36m: np.ndarray, fps: float, seed: int, take: int,
                  noisy: bool, true_focal: bool = False) -> dict[str, dict]:
    """Scores of the service output and of the pinned baseline on one take (``true_focal``: the lifter is
    given the virtual camera's focal length, as a caller who knows the lens would, instead of the prior)."""
    points = coco.astype(np.float64)
    cam = static_camera(np.random.default_rng([seed, take]), points)
    kp = project_take(np.random.default_rng([seed, take, 1]), cam, coco, noisy)
    poses = lift_frames(frames_message(kp), WIDTH, HEIGHT, lifter, min_track_frames=1, fps=fps,
                        focal_px=float(cam.f[0]) if true_focal else 0.0)
    track = max(poses.tracks, key=lambda t: t.frame_count)
    sl = slice(track.first_frame, track.first_frame + track.frame_count)
    world = from_proto(track.world).reshape(-1, 17, 3)
    contacts = from_proto(track.foot_contacts).reshape(-1, 2)
    grounded = from_proto(track.grounded).reshape(-1, 17, 3)
    gt = h36m[sl].astype(np.float64)
    service = take_scores(world, contacts, gt, fps)
    true_pitch = float(np.rad2deg(np.arcsin(-cam.R[0, 2, 1])))
    service["pitch_err"] = abs(poses.camera.pitch_deg - true_pitch)
    service["height_err"] = abs(poses.camera.height_m - float(cam.center[0, 1])) / float(cam.center[0, 1])
    return {"service": service, "pinned": take_scores(grounded, None, gt, fps), "tracks": len(poses.tracks)}


def summarise(rows: list[tuple[str, dict]], min_travel: float) -> dict:
    """Per action, over all takes (OVERALL) and over the takes that travel at least ``min_travel`` metres
    (TRAVELLING): mean RTE (%) over travelling takes, sliding (cm/frame), contact P/R, camera errors."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for action, scores in rows:
        groups[action].append(scores)
        groups["OVERALL"].append(scores)
        if scores["travel"] >= min_travel:
            groups["TRAVELLING"].append(scores)
    table = {}
    for key, items in groups.items():
        moving = [s for s in items if s["travel"] >= min_travel]
        slide_n = sum(s["slide_n"] for s in items)
        entry = {"takes": len(items), "travelling_takes": len(moving),
                 "rte_pct": 100 * float(np.mean([s["rte"] for s in moving])) if moving else None,
                 "slide_cm": 100 * sum(s["slide_sum"] for s in items) / slide_n if slide_n else None}
        if "tp" in items[0]:
            tp, fp, fn = (sum(s[k] for s in items) for k in ("tp", "fp", "fn"))
            entry["contact_precision"] = tp / max(tp + fp, 1)
            entry["contact_recall"] = tp / max(tp + fn, 1)
        if "pitch_err" in items[0]:
            entry["pitch_err_deg"] = float(np.mean([s["pitch_err"] for s in items]))
            entry["height_err_pct"] = 100 * float(np.mean([s["height_err"] for s in items]))
        table[key] = entry
    return table


def _fmt(v: float | None, spec: str) -> str:
    return format(v, spec) if v is not None else "-".rjust(len(format(0.0, spec)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="lifter weights (default: the service's)")
    parser.add_argument("--noisy", action="store_true", help="detector-like 2D noise instead of exact projections")
    parser.add_argument("--true-focal", action="store_true",
                        help="give the lifter the virtual camera's focal length instead of using the prior")
    parser.add_argument("--seed", type=int, default=EVAL_SEED)
    parser.add_argument("--takes", type=int, default=0, help="only the first N validation takes (0: all)")
    parser.add_argument("--min-travel", type=float, default=1.0, help="metres a take must travel to count in RTE")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = MocapData.load()
    lifter = load_service_lifter(args.weights)
    takes = data.takes(validation=True)
    if args.takes:
        takes = takes[:args.takes]
    rows: dict[str, list[tuple[str, dict]]] = {"service": [], "pinned": []}
    fragmented = 0
    for i in takes:
        res = evaluate_take(lifter, data.take(i, "coco17"), data.take(i, "h36m17"), 30.0, args.seed, int(i),
                            args.noisy, args.true_focal)
        action = f"{data.datasets[i]}/{data.actions[i]}"
        for k in rows:
            rows[k].append((action, res[k]))
        fragmented += res["tracks"] > 1
    tables = {k: summarise(v, args.min_travel) for k, v in rows.items()}
    print(f"Root motion on {len(takes)} validation takes, static virtual camera, "
          f"{'noisy' if args.noisy else 'clean'} 2D, {'true focal length' if args.true_focal else 'focal from the prior'}; RTE over takes travelling >= "
          f"{args.min_travel} m; sliding while the true foot is planted; {fragmented} takes split into >1 track")
    print(f"{'action':32s} {'takes':>5s} | {'RTE %':>6s} {'slide cm/f':>10s} {'contact P/R':>11s} |"
          f" {'pitch err':>9s} {'height err':>10s} | {'pinned RTE %':>12s} {'slide':>6s}")
    for key in sorted(tables["service"], key=lambda k: (k.isupper(), k)):
        s, p = tables["service"][key], tables["pinned"][key]
        print(f"{key:32s} {s['takes']:5d} | {_fmt(s['rte_pct'], '6.1f')} {_fmt(s['slide_cm'], '10.2f')} "
              f"{s['contact_precision']:5.2f}/{s['contact_recall']:4.2f} {s['pitch_err_deg']:7.1f} d "
              f"{s['height_err_pct']:8.0f} % | {_fmt(p['rte_pct'], '12.1f')} "
              f"{_fmt(p['slide_cm'], '6.2f')}")
    if args.json:
        args.json.write_text(json.dumps(tables, indent=1))


if __name__ == "__main__":
    main()
