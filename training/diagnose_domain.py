"""Where a lifter's error on a data set comes from: skeleton, size, orientation in depth, flips, joint definitions.

    python -m training.diagnose_domain [--weights W.pt] [--noisy] [--json out.json]

Runs the lifter on exactly the clips :func:`training.evaluate.evaluate` scores (same cameras, seed, clean 2D by
default) for the held-out CMU takes and the Bandai validation takes, and prints per data set:

* **skeleton**: mean true and predicted length of every Human3.6M bone (cm), and each as a share of the mean
  limb length (proportions);
* **joint definitions**: where the 3D joints that the 2D side builds from other joints (pelvis, thorax, spine,
  head top, :func:`services.common.skeletons.coco17_to_h36m17`) lie against their 2D construction, in the body's
  own frame (cm up / forward): a data set whose mocap joint sits elsewhere than the training set's asks the network
  for an offset it cannot see in the 2D;
* **per joint**: MPJPE and the error left after one scale per frame (N-MPJPE's alignment);
* **size**: the per-frame least-squares scale that fits the prediction to the truth (median, quartiles) and the
  ratio of predicted to true mean limb length;
* **orientation in depth**: the error of the trunk's lean towards/away from the camera (pelvis -> thorax in the
  camera's y-z plane, signed: positive = the prediction leans further towards the camera), of the hip line's
  heading about the vertical, and the rotation angle of the best per-frame fit (after scale);
* **flips**: share of frames whose left/right depth order of the hips or shoulders is reversed (where the truth
  has them at least 5 cm apart in depth), and of limb joints whose depth relative to their parent has the wrong
  sign (where the truth is at least 10 cm);
* **per take**: MPJPE / N-MPJPE / P-MPJPE, the scale, the mean lean error and the hip-heading error.

Everything here is measured, nothing is trained; the 3D is used only to measure.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from services.common.skeletons import H36M17
from services.lifter3d.lift import DEFAULT_WEIGHTS, load_lifter
from training.cmu import load_cmu
from training.dataset import MocapData
from training.evaluate import EVAL_SEED, evaluation_clips, mpjpe, predict, procrustes_align, scale_align

J = H36M17.index
LIMBS = [(J("right_hip"), J("right_knee")), (J("right_knee"), J("right_ankle")), (J("left_hip"), J("left_knee")),
         (J("left_knee"), J("left_ankle")), (J("left_shoulder"), J("left_elbow")),
         (J("left_elbow"), J("left_wrist")), (J("right_shoulder"), J("right_elbow")),
         (J("right_elbow"), J("right_wrist"))]
#: Limb joints checked for a depth flip against their parent.
FLIP_CHILDREN = ("left_knee", "left_ankle", "right_knee", "right_ankle", "left_elbow", "left_wrist",
                 "right_elbow", "right_wrist")


def bone_name(bone: tuple[int, int]) -> str:
    a, b = bone
    return f"{H36M17.joints[a]}-{H36M17.joints[b]}"


def bone_lengths(p: np.ndarray) -> np.ndarray:
    """``[N, 17, 3]`` -> ``[N, 16]`` lengths of ``H36M17.bones``."""
    a, b = zip(*H36M17.bones)
    return np.linalg.norm(p[:, list(b)] - p[:, list(a)], axis=-1)


def body_frame(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame unit axes (up, forward, left) of ``[N, 17, 3]`` camera-frame poses (x right, y down, z forward,
    right-handed): up from the pelvis to the shoulders' midpoint, left along the hip line made orthogonal to up,
    forward = left x up (where the chest faces)."""
    shoulders = (p[:, J("left_shoulder")] + p[:, J("right_shoulder")]) / 2
    up = shoulders - p[:, J("pelvis")]
    up /= np.linalg.norm(up, axis=-1, keepdims=True) + 1e-9
    left = p[:, J("left_hip")] - p[:, J("right_hip")]
    left -= (left * up).sum(-1, keepdims=True) * up
    left /= np.linalg.norm(left, axis=-1, keepdims=True) + 1e-9
    forward = np.cross(left, up)
    return up, forward, left


def construction_offsets(p: np.ndarray) -> dict[str, np.ndarray]:
    """Where the built 3D joints sit against their 2D construction (:func:`coco17_to_h36m17`'s rules applied to
    the 3D joints), in the body frame, metres: name -> ``[N, 2]`` (up, forward)."""
    up, fwd, _ = body_frame(p)
    thorax_built = (p[:, J("left_shoulder")] + p[:, J("right_shoulder")]) / 2
    spine_built = (p[:, J("pelvis")] + thorax_built) / 2
    out = {}
    for name, built in (("thorax", thorax_built), ("spine", spine_built)):
        d = p[:, J(name)] - built
        out[name] = np.stack([(d * up).sum(-1), (d * fwd).sum(-1)], -1)
    return out


def lean_and_heading(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: the trunk's lean in the camera's y-z plane (radians, atan2 of depth over height of the pelvis ->
    thorax vector; positive = the top nearer the camera) and the hip line's heading in the x-z plane (radians)."""
    trunk = p[:, J("thorax")] - p[:, J("pelvis")]
    lean = np.arctan2(-trunk[:, 2], -trunk[:, 1])  # camera y is down: "up" is -y; nearer = smaller z
    hips = p[:, J("left_hip")] - p[:, J("right_hip")]
    heading = np.arctan2(hips[:, 2], hips[:, 0])
    return lean, heading


def wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


def rotation_angle(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Angle (radians) of the rotation of the per-frame Procrustes fit of ``pred`` to ``gt`` (both root-aligned)."""
    h = np.einsum("nji,njk->nik", pred, gt)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(u @ vt))
    u[:, :, -1] *= d[:, None]
    r = u @ vt
    return np.arccos(np.clip((np.trace(r, axis1=1, axis2=2) - 1) / 2, -1, 1))


def collect(model, data: MocapData, takes: np.ndarray, noisy: bool, seed: int) -> dict[str, np.ndarray]:
    """Predictions and truth (root-relative, camera frame, metres) of every scored frame, with each frame's take."""
    preds, gts, take_of = [], [], []
    for i, batch in evaluation_clips(data, takes, noisy, seed):
        pred = predict(model, batch.inputs)[0]
        preds.append(pred - pred[:, :1])
        gts.append(batch.targets[0])
        take_of.append(np.full(len(pred), i))
    return {"pred": np.concatenate(preds), "gt": np.concatenate(gts), "take": np.concatenate(take_of)}


def diagnose(frames: dict[str, np.ndarray], data: MocapData) -> dict:
    """Every figure of the module doc from :func:`collect`'s output."""
    pred, gt = frames["pred"].astype(np.float64), frames["gt"].astype(np.float64)
    scaled = scale_align(pred, gt)
    scale = (pred * gt).sum(axis=(1, 2)) / np.maximum((pred * pred).sum(axis=(1, 2)), 1e-12)
    bl_gt, bl_pred = bone_lengths(gt), bone_lengths(pred)
    limb_idx = [H36M17.bones.index(b) if b in H36M17.bones else H36M17.bones.index(b[::-1]) for b in LIMBS]
    limb_gt, limb_pred = bl_gt[:, limb_idx].mean(1), bl_pred[:, limb_idx].mean(1)
    lean_g, head_g = lean_and_heading(gt)
    lean_p, head_p = lean_and_heading(scaled)
    lean_err, head_err = wrap(lean_p - lean_g), wrap(head_p - head_g)
    rot = rotation_angle(scaled, gt)
    flips = {}
    for pair in (("left_hip", "right_hip"), ("left_shoulder", "right_shoulder")):
        dz_g = gt[:, J(pair[0]), 2] - gt[:, J(pair[1]), 2]
        dz_p = pred[:, J(pair[0]), 2] - pred[:, J(pair[1]), 2]
        m = np.abs(dz_g) > 0.05
        flips[pair[0].split("_")[1] + "s"] = {"rate": float((np.sign(dz_g[m]) != np.sign(dz_p[m])).mean()),
                                              "frames": int(m.sum())}
    parents = dict((c, a) for a, c in H36M17.bones)
    limb_flips = []
    for name in FLIP_CHILDREN:
        c = J(name)
        dz_g = gt[:, c, 2] - gt[:, parents[c], 2]
        dz_p = pred[:, c, 2] - pred[:, parents[c], 2]
        m = np.abs(dz_g) > 0.10
        limb_flips.append((np.sign(dz_g[m]) != np.sign(dz_p[m])).sum() / max(1, m.sum()))
    flips["limb_depth_sign"] = {"rate": float(np.mean(limb_flips))}
    e, ne, pe = mpjpe(pred, gt), mpjpe(scaled, gt), mpjpe(procrustes_align(pred, gt), gt)
    per_take = {}
    for i in np.unique(frames["take"]):
        m = frames["take"] == i
        per_take[str(data.names[i])] = {
            "action": str(data.actions[i]), "frames": int(m.sum()), "mpjpe": 1000 * float(e[m].mean()),
            "n_mpjpe": 1000 * float(ne[m].mean()), "p_mpjpe": 1000 * float(pe[m].mean()),
            "scale": float(np.median(scale[m])), "limb_ratio": float(limb_pred[m].mean() / limb_gt[m].mean()),
            "lean_err_deg": float(np.degrees(lean_err[m]).mean()),
            "abs_lean_err_deg": float(np.degrees(np.abs(lean_err[m])).mean()),
            "heading_err_deg": float(np.degrees(np.median(np.abs(head_err[m])))),
        }
    offsets_g = {k: v.mean(0) for k, v in construction_offsets(gt).items()}
    offsets_p = {k: v.mean(0) for k, v in construction_offsets(pred).items()}
    return {
        "frames": len(pred),
        "mpjpe": 1000 * float(e.mean()), "n_mpjpe": 1000 * float(ne.mean()), "p_mpjpe": 1000 * float(pe.mean()),
        "bones": {bone_name(b): {"true_cm": 100 * float(bl_gt[:, k].mean()), "pred_cm": 100 * float(bl_pred[:, k].mean()),
                                 "true_share": float((bl_gt[:, k] / limb_gt).mean()),
                                 "pred_share": float((bl_pred[:, k] / limb_pred).mean())}
                  for k, b in enumerate(H36M17.bones)},
        "hip_width_cm": {"true": 100 * float(np.linalg.norm(gt[:, J("left_hip")] - gt[:, J("right_hip")], axis=-1).mean()),
                         "pred": 100 * float(np.linalg.norm(pred[:, J("left_hip")] - pred[:, J("right_hip")], axis=-1).mean())},
        "construction_offsets_cm": {k: {"true": (100 * offsets_g[k]).round(1).tolist(),
                                        "pred": (100 * offsets_p[k]).round(1).tolist()} for k in offsets_g},
        "per_joint": {name: {"mpjpe": 1000 * float(np.linalg.norm(pred[:, j] - gt[:, j], axis=-1).mean()),
                             "n_mpjpe": 1000 * float(np.linalg.norm(scaled[:, j] - gt[:, j], axis=-1).mean())}
                      for j, name in enumerate(H36M17.joints)},
        "scale": {"median": float(np.median(scale)), "q25": float(np.quantile(scale, 0.25)),
                  "q75": float(np.quantile(scale, 0.75))},
        "limb_ratio_pred_over_true": float(limb_pred.mean() / limb_gt.mean()),
        "limb_true_cm": 100 * float(limb_gt.mean()), "limb_pred_cm": 100 * float(limb_pred.mean()),
        "lean_err_deg": {"mean": float(np.degrees(lean_err).mean()), "mean_abs": float(np.degrees(np.abs(lean_err)).mean())},
        "true_lean_deg": {"mean": float(np.degrees(lean_g).mean())},
        "heading_err_deg": {"median_abs": float(np.degrees(np.median(np.abs(head_err)))),
                            "share_over_90": float((np.abs(head_err) > np.pi / 2).mean())},
        "rotation_deg": {"median": float(np.degrees(np.median(rot))), "mean": float(np.degrees(rot.mean()))},
        "flips": flips,
        "per_take": per_take,
    }


def print_report(name: str, r: dict) -> None:
    print(f"== {name}: {r['frames']} frames; MPJPE {r['mpjpe']:.1f}  N-MPJPE {r['n_mpjpe']:.1f}  "
          f"P-MPJPE {r['p_mpjpe']:.1f} mm")
    print(f"  size: per-frame scale pred->true median {r['scale']['median']:.3f} (quartiles {r['scale']['q25']:.3f}"
          f" - {r['scale']['q75']:.3f}); mean limb true {r['limb_true_cm']:.1f} cm, predicted "
          f"{r['limb_pred_cm']:.1f} cm (ratio {r['limb_ratio_pred_over_true']:.3f}); hip width true "
          f"{r['hip_width_cm']['true']:.1f} cm, predicted {r['hip_width_cm']['pred']:.1f} cm")
    print(f"  orientation (after scale): trunk lean error mean {r['lean_err_deg']['mean']:+.1f} deg, mean |.| "
          f"{r['lean_err_deg']['mean_abs']:.1f} deg (true lean mean {r['true_lean_deg']['mean']:+.1f}); hip heading "
          f"error median |.| {r['heading_err_deg']['median_abs']:.1f} deg, {100 * r['heading_err_deg']['share_over_90']:.1f} % "
          f"of frames over 90 deg; best-fit rotation median {r['rotation_deg']['median']:.1f} deg")
    f = r["flips"]
    print(f"  flips: hips' depth order reversed {100 * f['hips']['rate']:.1f} % ({f['hips']['frames']} frames), "
          f"shoulders' {100 * f['shoulders']['rate']:.1f} % ({f['shoulders']['frames']}), limb depth sign "
          f"{100 * f['limb_depth_sign']['rate']:.1f} %")
    print("  built joints against their 2D construction (cm up, forward), true / predicted: " + "; ".join(
        f"{k} {v['true']} / {v['pred']}" for k, v in r["construction_offsets_cm"].items()))
    print(f"  {'bone':28s} {'true cm':>8s} {'pred cm':>8s} {'true share':>10s} {'pred share':>10s}")
    for b, v in r["bones"].items():
        print(f"  {b:28s} {v['true_cm']:8.1f} {v['pred_cm']:8.1f} {v['true_share']:10.3f} {v['pred_share']:10.3f}")
    print(f"  {'joint':16s} {'MPJPE':>7s} {'scaled':>7s}")
    for j, v in r["per_joint"].items():
        print(f"  {j:16s} {v['mpjpe']:7.1f} {v['n_mpjpe']:7.1f}")
    print(f"  {'take':36s} {'frames':>6s} {'MPJPE':>6s} {'N-MP':>6s} {'P-MP':>6s} {'scale':>6s} {'limbs':>6s} "
          f"{'lean':>6s} {'|lean|':>6s} {'head':>6s}")
    for t, v in r["per_take"].items():
        print(f"  {(t + ' ' + v['action'])[:36]:36s} {v['frames']:6d} {v['mpjpe']:6.1f} {v['n_mpjpe']:6.1f} "
              f"{v['p_mpjpe']:6.1f} {v['scale']:6.3f} {v['limb_ratio']:6.3f} {v['lean_err_deg']:+6.1f} "
              f"{v['abs_lean_err_deg']:6.1f} {v['heading_err_deg']:6.1f}")
    print()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument("--noisy", action="store_true", help="detector-like noise instead of clean projections")
    p.add_argument("--sets", default="cmu,bandai", help="comma-separated: cmu, bandai")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None, help="also write every figure here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_lifter(args.weights)
    loaders = {"cmu": ("CMU held-out", load_cmu), "bandai": ("Bandai validation", MocapData.load)}
    out = {}
    print(f"weights {args.weights}, {'noisy' if args.noisy else 'clean'} 2D, seed {EVAL_SEED}\n")
    for key in args.sets.split(","):
        name, load = loaders[key]
        data = load()
        out[name] = diagnose(collect(model, data, data.takes(validation=True), args.noisy, EVAL_SEED), data)
        print_report(name, out[name])
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
