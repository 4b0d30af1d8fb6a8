"""The CMU motion-capture takes (``../shared/data/mocap/cmu-subjects-001-007.tar.xz``) as Human3.6M-17 and COCO-17
joints: a motion domain the Bandai-Namco takes do not cover, for adapting and measuring the lifter.

The archive holds 61 BVH takes of CMU subjects 1, 2, 3, 5, 6 and 7 converted to a character rig (joints
``CC_Base_*``, some takes under an extra ``RL_BoneRoot``), in centimetres at 60 frames per second. After forward
kinematics (:func:`training.mocap.forward_kinematics`, plus the root's rest offset, :func:`root_rest_offset_m`)
every take stands with +Y up on a floor at y = 0, as the Bandai takes do and as the virtual cameras of
:func:`training.dataset.sample_cameras` assume (checked per take: the loader refuses a take whose median
ankles-to-head direction is not within 37 degrees of +Y).

Mapping table, CMU rig -> our joints (one rule per joint; face points as for Bandai, see below):

==============================  ================================================================
COCO-17 / Human3.6M-17          CMU rig
==============================  ================================================================
left / right hip                ``CC_Base_L_Thigh`` / ``CC_Base_R_Thigh`` (hip joint centres)
left / right knee               ``CC_Base_L_Calf`` / ``CC_Base_R_Calf``
left / right ankle              ``CC_Base_L_Foot`` / ``CC_Base_R_Foot``
left / right shoulder           ``CC_Base_L_Upperarm`` / ``CC_Base_R_Upperarm``
left / right elbow              ``CC_Base_L_Forearm`` / ``CC_Base_R_Forearm``
left / right wrist              ``CC_Base_L_Hand`` / ``CC_Base_R_Hand``
left / right eye                ``CC_Base_L_Eye`` / ``CC_Base_R_Eye``
nose, ears, head top            from the eyes' midpoint along the head's own axes (below)
pelvis (H36M)                   midpoint of the hips (the rule of the Bandai mapping and of the 2D side)
spine (H36M)                    ``CC_Base_Spine02`` (mid-chest, about 26 cm above the hip centres)
thorax (H36M)                   midpoint of ``CC_Base_L_Clavicle`` and ``CC_Base_R_Clavicle`` (the base of the
                                neck between the shoulders; the rig's neck joint sits about 6 cm higher)
neck_nose (H36M)                the nose point
==============================  ================================================================

Head axes: the columns of ``CC_Base_Head``'s world rotation, local x = the actor's left, local y = up (crown),
local z = forward (face) (:data:`HEAD_AXES`; the eyes sit along +y +z of that joint in every take). The
nose, ears and head top keep the same offsets from the eyes' midpoint as the Bandai mapping gives them
(:data:`training.mocap.HEAD_POINTS` less its eye midpoint), so both data sets share one face geometry.

Frames: a take's leading frames are dropped while the skeleton jumps from one frame to the next by more than
10 cm per joint on average (a rest/T-pose frame stored before the motion; no body moves that far in 1/60 s).
Takes are then resampled to 30 frames per second (every second frame), the rate of the Bandai takes and the
lifter's training.

Split (fixed, by whole take): within each subject, takes sorted by name, positions ``i % 4 == 1`` are
**held out** (17 takes: measured only, never adapted on); the other 44 are the **adaptation** takes (their 2D
stands in for "the user's videos"). See :func:`is_held_out`.

Licence of the data: CMU's terms (free to use, modify and include in products, not to resell as data); credit
"mocap.cs.cmu.edu, created with funding from NSF EIA-0196217".
"""
from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

import numpy as np

from services.common.skeletons import COCO17, H36M17
from training.dataset import CACHE_DIR, SHARED_MOCAP, MocapData
from training.mocap import CM, HEAD_POINTS, Bvh, forward_kinematics, load_bvh

ARCHIVE = "cmu-subjects-001-007.tar.xz"
EXTRACT_DIR = CACHE_DIR.parent / "cmu"
CACHE_FILE = "cmu_joints_v2.npz"  # v2: the root's rest offset added (floor at y = 0)
SOURCE_FPS = 60.0
TARGET_FPS = 30.0
JUMP_M = 0.10  # mean per-joint displacement between consecutive frames that marks a leading rest frame

BODY = {
    "left_hip": "CC_Base_L_Thigh", "right_hip": "CC_Base_R_Thigh",
    "left_knee": "CC_Base_L_Calf", "right_knee": "CC_Base_R_Calf",
    "left_ankle": "CC_Base_L_Foot", "right_ankle": "CC_Base_R_Foot",
    "left_shoulder": "CC_Base_L_Upperarm", "right_shoulder": "CC_Base_R_Upperarm",
    "left_elbow": "CC_Base_L_Forearm", "right_elbow": "CC_Base_R_Forearm",
    "left_wrist": "CC_Base_L_Hand", "right_wrist": "CC_Base_R_Hand",
    "left_eye": "CC_Base_L_Eye", "right_eye": "CC_Base_R_Eye",
}
SPINE, HEAD = "CC_Base_Spine02", "CC_Base_Head"
CLAVICLES = ("CC_Base_L_Clavicle", "CC_Base_R_Clavicle")

#: Local axes of ``CC_Base_Head`` as (column index, sign) for up, forward and left.
HEAD_AXES = {"up": (1, 1.0), "forward": (2, 1.0), "left": (0, 1.0)}

_EYE_MID = np.mean([HEAD_POINTS["left_eye"], HEAD_POINTS["right_eye"]], axis=0)
#: Offsets (up, forward, left) in metres from the eyes' midpoint: the Bandai face geometry.
FACE_FROM_EYES = {name: tuple(np.asarray(HEAD_POINTS[name]) - _EYE_MID)
                  for name in ("nose", "left_ear", "right_ear", "head_top")}


def is_held_out(name: str, subject_sorted_names: list[str]) -> bool:
    """The split rule: position ``i`` among the subject's takes sorted by name, held out when ``i % 4 == 1``."""
    return subject_sorted_names.index(name) % 4 == 1


def leading_rest_frames(positions: np.ndarray, jump_m: float = JUMP_M) -> int:
    """How many leading frames of ``positions [F, J, 3]`` (metres) to drop: while the root-relative skeleton
    jumps to the next frame by more than ``jump_m`` per joint on average."""
    rel = positions - positions[:, :1]
    step = np.linalg.norm(np.diff(rel, axis=0), axis=-1).mean(axis=-1)
    n = 0
    while n < len(step) and step[n] > jump_m:
        n += 1
    return n


def root_rest_offset_m(bvh: Bvh) -> np.ndarray:
    """The root's rest OFFSET in metres, which this conversion's root position channels are relative to.

    :func:`training.mocap.forward_kinematics` reads a root's position channels as its place in the world (the
    Bandai files' convention). In the takes rooted at ``CC_Base_Hip`` the root's OFFSET puts the hips about 105 cm
    above the floor and the position channels hold only the displacement from there (a few centimetres of bounce
    in a walk), so read alone they put the hips at the floor and the feet a metre below it. Adding the OFFSET back
    stands every take on a floor at y = 0 like the Bandai takes (checked by ``tests/training/test_cmu_mocap.py``);
    for the takes rooted at ``RL_BoneRoot`` the OFFSET is zero and nothing moves."""
    root = bvh.parents.index(-1)
    if not any(c.endswith("position") for c in bvh.channels[root]):
        return np.zeros(3)
    return np.asarray(bvh.offsets[root], dtype=np.float64) * CM


def cmu_joints(bvh: Bvh) -> dict[str, np.ndarray]:
    """``{"coco17": [F, 17, 3], "h36m17": [F, 17, 3]}`` metres, +Y up, at the file's own frame rate, leading
    rest frames dropped. Raises ``ValueError`` when a joint of the table is missing or the take is not +Y up."""
    missing = [j for j in [*BODY.values(), SPINE, HEAD, *CLAVICLES] if j not in bvh.names]
    if missing:
        raise ValueError(f"not a CMU character-rig BVH: joints {missing} are missing")
    pos, rot = forward_kinematics(bvh)
    pos = pos + root_rest_offset_m(bvh)
    drop = leading_rest_frames(pos)
    pos, rot = pos[drop:], rot[drop:]
    get = {k: pos[:, bvh.index(v)] for k, v in BODY.items()}
    head_rot = rot[:, bvh.index(HEAD)]
    axes = [sign * head_rot[:, :, col] for col, sign in (HEAD_AXES["up"], HEAD_AXES["forward"], HEAD_AXES["left"])]
    eyes = (get["left_eye"] + get["right_eye"]) / 2
    for name, offset in FACE_FROM_EYES.items():
        get[name] = eyes + sum(o * a for o, a in zip(offset, axes))
    up = get["head_top"] - (get["left_ankle"] + get["right_ankle"]) / 2
    median_up = np.median(up / np.linalg.norm(up, axis=-1, keepdims=True), axis=0)
    if median_up[1] < 0.8:
        raise ValueError(f"the take does not stand with +Y up (median ankles-to-head direction {median_up.round(2)})")
    coco = np.stack([get[j] for j in COCO17.joints], axis=1)
    get["pelvis"] = (get["left_hip"] + get["right_hip"]) / 2
    get["spine"] = pos[:, bvh.index(SPINE)]
    get["thorax"] = (pos[:, bvh.index(CLAVICLES[0])] + pos[:, bvh.index(CLAVICLES[1])]) / 2
    get["neck_nose"] = get["nose"]
    h36m = np.stack([get[j] for j in H36M17.joints], axis=1)
    return {"coco17": coco.astype(np.float32), "h36m17": h36m.astype(np.float32)}


def take_joints_30fps(path: str | Path) -> dict[str, np.ndarray]:
    """One take's joints (see :func:`cmu_joints`) resampled to 30 fps."""
    bvh = load_bvh(path)
    fps = 1.0 / bvh.frame_time
    step = max(1, int(round(fps / TARGET_FPS)))
    return {k: v[::step] for k, v in cmu_joints(bvh).items()}


def extract(shared: Path = SHARED_MOCAP, target: Path = EXTRACT_DIR) -> Path:
    """Unpack the archive once; returns the folder holding ``subjects/`` and ``CMU data.csv``."""
    root = target / ARCHIVE.removesuffix(".tar.xz")
    if (target / ".extracted").exists():
        return root
    archive = shared / ARCHIVE
    if not archive.exists():
        raise FileNotFoundError(f"CMU mocap archive {archive} is missing (expected under ../shared/data/mocap)")
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "xJf", str(archive), "-C", str(target)], check=True)
    (target / ".extracted").write_text("ok\n")
    return root


def _categories(csv_path: Path) -> dict[str, str]:
    """Take name (``001_01``) -> motion category from ``CMU data.csv`` (the description up to " - " or ",")."""
    out = {}
    with csv_path.open(newline="") as f:
        for row in csv.DictReader(f):
            name = f"{int(row['Subject']):03d}_{int(row['Trial #']):02d}"
            out[name] = row["Motion Description"].split(" - ")[0].split(",")[0].strip().replace(" ", "-")
    return out


def build_cache(cache: Path = CACHE_DIR, verbose: bool = True) -> Path:
    """Run FK on every take once and store the joints like :func:`training.dataset.build_cache` does."""
    out = cache / CACHE_FILE
    if out.exists():
        return out
    root = extract()
    files = sorted(root.glob("subjects/*/*.bvh"))
    if not files:
        raise FileNotFoundError(f"no BVH files under {root}/subjects")
    categories = _categories(root / "CMU data.csv")
    coco, h36m, names, actions, lengths = [], [], [], [], []
    for f in files:
        joints = take_joints_30fps(f)
        coco.append(joints["coco17"])
        h36m.append(joints["h36m17"])
        names.append(f.stem)
        actions.append(f"s{f.stem[:3]}-{categories.get(f.stem, 'unknown')}")
        lengths.append(len(joints["coco17"]))
        if verbose:
            print(f"FK {f.stem}: {lengths[-1]} frames at 30 fps", flush=True)
    by_subject: dict[str, list[str]] = {}
    for n in names:
        by_subject.setdefault(n[:3], []).append(n)
    held_out = [is_held_out(n, sorted(by_subject[n[:3]])) for n in names]
    lengths_arr = np.asarray(lengths, dtype=np.int64)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, coco17=np.concatenate(coco), h36m17=np.concatenate(h36m),
             starts=np.concatenate([[0], np.cumsum(lengths_arr)[:-1]]), lengths=lengths_arr,
             names=np.asarray(names), datasets=np.asarray(["cmu"] * len(names)), actions=np.asarray(actions),
             validation=np.asarray(held_out))
    os.replace(tmp, out)
    return out


def load_cmu(cache: Path = CACHE_DIR) -> MocapData:
    """All CMU takes as :class:`training.dataset.MocapData`; ``validation`` marks the held-out takes, so
    ``takes(validation=True)`` are the held-out ones and ``takes(validation=False)`` the adaptation ones."""
    with np.load(build_cache(cache)) as z:
        return MocapData(**{k: z[k] for k in MocapData.__dataclass_fields__})
