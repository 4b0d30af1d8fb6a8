"""Training and validation samples for the 2D -> 3D lifter, made from the Bandai-Namco motion capture.

Pipeline of one sample (all numpy, sampled afresh for every batch):

1. a window of ``T`` consecutive frames from one take (3D COCO-17 and H36M-17 joints, metres, +Y up),
2. per-sample bone-length scaling (global size and per-limb factors, left/right symmetric),
3. a virtual pinhole camera: image 16:9 or 9:16, horizontal FOV 40-80 deg, azimuth 0-360 deg, camera height
   0.3-2.5 m, distance chosen from the person's apparent size, the person anywhere in the frame, small roll,
4. projection of COCO-17 to pixels; optional detector-like noise (:func:`add_detector_noise`) followed by the
   same clean-up inference does (:mod:`services.lifter3d.keypoints2d`),
5. :func:`services.common.skeletons.coco17_to_h36m17` -- the very function inference uses -- and GAST-Net screen
   normalisation,
6. optional horizontal flip (2D and 3D, H36M flip permutation).

Targets are Human3.6M-17 joints in the camera frame of that virtual camera (x right, y down, z forward, as
Human3.6M/GAST-Net), metres, root-relative (pelvis at the origin).

Validation split (by whole take): inside every group of takes with the same dataset and action, sorted by
name, the takes at positions 5, 15, 25, ... (``i % 10 == 5``) are validation; training never sees them. Groups
of fewer than 6 takes (dataset-1 ``call``, ``kick``, ``punch``, ``slash``, ``respond``, ``dance-short``: one take
each) therefore stay in training and are not validated. See :func:`is_validation_take`.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.placement import detector_placement
from services.common.skeletons import COCO17, H36M17, coco17_to_h36m17

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_MOCAP = REPO_ROOT.parent / "shared" / "data" / "mocap"
CACHE_DIR = REPO_ROOT / ".cache" / "mocap"
ARCHIVES = ("bandai-namco-1.tar.xz", "bandai-namco-2-subset.tar.xz")
CACHE_FILE = "bandai_joints_v1.npz"

H36M_FLIP = H36M17.flip_permutation
COCO_FLIP = COCO17.flip_permutation


# ------------------------------------------------------------------------------------------ data on disk
def extract_archives(shared: Path = SHARED_MOCAP, cache: Path = CACHE_DIR) -> Path:
    """Unpack the mocap archives into ``cache`` once (a marker file records completion); returns ``cache``."""
    marker = cache / ".extracted"
    if marker.exists():
        return cache
    cache.mkdir(parents=True, exist_ok=True)
    for name in ARCHIVES:
        archive = shared / name
        if not archive.exists():
            raise FileNotFoundError(f"mocap archive {archive} is missing (expected under ../shared/data/mocap)")
        subprocess.run(["tar", "xJf", str(archive), "-C", str(cache)], check=True)
    marker.write_text("ok\n")
    return cache


def take_info(path: str | Path) -> tuple[str, str, str]:
    """``(take name, dataset, action)`` from a file name like ``dataset-1_walk-left_tired_001.bvh``."""
    name = Path(path).stem
    dataset, action = name.split("_")[:2]
    return name, dataset, action


def is_validation_take(name: str, group_sorted_names: list[str]) -> bool:
    """The documented split rule: position ``i`` in the sorted (dataset, action) group with ``i % 10 == 5``."""
    return group_sorted_names.index(name) % 10 == 5


def build_cache(cache: Path = CACHE_DIR, shared: Path = SHARED_MOCAP, verbose: bool = True) -> Path:
    """Run FK on every take once and store the 3D joints in ``cache / CACHE_FILE`` (float32, metres).

    The file holds ``coco17`` and ``h36m17`` ``[N, 17, 3]`` (all takes concatenated), ``starts`` / ``lengths``
    per take, ``names``, ``datasets``, ``actions`` and the boolean ``validation`` per take.
    """
    from training.mocap import take_joints

    out = cache / CACHE_FILE
    if out.exists():
        return out
    extract_archives(shared, cache)
    files = sorted(cache.glob("*/data/*.bvh"))
    if not files:
        raise FileNotFoundError(f"no BVH files under {cache}")
    coco, h36m, names, datasets, actions, lengths = [], [], [], [], [], []
    for i, f in enumerate(files):
        joints = take_joints(f)
        name, dataset, action = take_info(f)
        coco.append(joints["coco17"])
        h36m.append(joints["h36m17"])
        names.append(name)
        datasets.append(dataset)
        actions.append(action)
        lengths.append(len(joints["coco17"]))
        if verbose and i % 100 == 0:
            print(f"FK {i}/{len(files)} {name}", flush=True)
    groups: dict[tuple[str, str], list[str]] = {}
    for n, d, a in zip(names, datasets, actions):
        groups.setdefault((d, a), []).append(n)
    for g in groups.values():
        g.sort()
    validation = [is_validation_take(n, groups[(d, a)]) for n, d, a in zip(names, datasets, actions)]
    lengths_arr = np.asarray(lengths, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths_arr)[:-1]])
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, coco17=np.concatenate(coco), h36m17=np.concatenate(h36m), starts=starts,
             lengths=lengths_arr, names=np.asarray(names), datasets=np.asarray(datasets),
             actions=np.asarray(actions), validation=np.asarray(validation))
    os.replace(tmp, out)
    return out


@dataclass
class MocapData:
    """All takes in memory. Arrays as in :func:`build_cache`."""

    coco17: np.ndarray
    h36m17: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    names: np.ndarray
    datasets: np.ndarray
    actions: np.ndarray
    validation: np.ndarray

    @classmethod
    def load(cls, cache: Path = CACHE_DIR) -> "MocapData":
        """Load (building first if needed) the cached joints."""
        with np.load(build_cache(cache)) as z:
            return cls(**{k: z[k] for k in cls.__dataclass_fields__})

    def takes(self, validation: bool) -> np.ndarray:
        """Indices of the validation (True) or training (False) takes."""
        return np.nonzero(self.validation == validation)[0]

    def take(self, i: int, layout: str) -> np.ndarray:
        """The joints ``[F, 17, 3]`` of take ``i`` in layout ``"coco17"`` or ``"h36m17"``."""
        arr = self.coco17 if layout == "coco17" else self.h36m17
        return arr[self.starts[i]:self.starts[i] + self.lengths[i]]


# ------------------------------------------------------------------------------------------ geometry
# Bone tree over 20 points: COCO-17 plus spine (17), thorax (18), head_top (19); -1 = hip midpoint (pelvis).
_SPINE, _THORAX, _HEADTOP = 17, 18, 19
_TREE = [  # (child, parent, scale group)
    (11, -1, "hipw"), (12, -1, "hipw"), (13, 11, "thigh"), (14, 12, "thigh"), (15, 13, "shin"), (16, 14, "shin"),
    (_SPINE, -1, "torso"), (_THORAX, _SPINE, "torso"),
    (5, _THORAX, "shoulder"), (6, _THORAX, "shoulder"), (7, 5, "upperarm"), (8, 6, "upperarm"),
    (9, 7, "forearm"), (10, 8, "forearm"),
    (0, _THORAX, "head"), (1, _THORAX, "head"), (2, _THORAX, "head"), (3, _THORAX, "head"), (4, _THORAX, "head"),
    (_HEADTOP, _THORAX, "head"),
]
_GROUPS = sorted({g for _, _, g in _TREE})


def scale_bones(points: np.ndarray, scales: dict[str, np.ndarray]) -> np.ndarray:
    """Rescale bones of the 20-point skeleton ``[B, T, 20, 3]``; ``scales[group]`` is ``[B]``. Pelvis stays put."""
    pelvis = (points[:, :, 11] + points[:, :, 12]) / 2
    out = np.empty_like(points)
    for child, parent, group in _TREE:
        p_old = pelvis if parent < 0 else points[:, :, parent]
        p_new = pelvis if parent < 0 else out[:, :, parent]
        out[:, :, child] = p_new + scales[group][:, None, None] * (points[:, :, child] - p_old)
    return out


def h36m_from_points(points: np.ndarray) -> np.ndarray:
    """Human3.6M-17 3D joints from the 20-point skeleton (same rules as :func:`mocap.bvh_to_h36m17`)."""
    c = COCO17.index
    src = {
        "right_hip": c("right_hip"), "right_knee": c("right_knee"), "right_ankle": c("right_ankle"),
        "left_hip": c("left_hip"), "left_knee": c("left_knee"), "left_ankle": c("left_ankle"),
        "spine": _SPINE, "thorax": _THORAX, "neck_nose": c("nose"), "head_top": _HEADTOP,
        "left_shoulder": c("left_shoulder"), "left_elbow": c("left_elbow"), "left_wrist": c("left_wrist"),
        "right_shoulder": c("right_shoulder"), "right_elbow": c("right_elbow"), "right_wrist": c("right_wrist"),
    }
    out = np.empty(points.shape[:-2] + (17, 3), dtype=points.dtype)
    for i, name in enumerate(H36M17.joints):
        if name == "pelvis":
            out[..., i, :] = (points[..., 11, :] + points[..., 12, :]) / 2
        else:
            out[..., i, :] = points[..., src[name], :]
    return out


def look_rotation(forward: np.ndarray, up_hint: np.ndarray) -> np.ndarray:
    """World->camera rotations ``[B, 3, 3]`` (rows = camera x right, y down, z forward) for look directions."""
    z = forward / np.linalg.norm(forward, axis=-1, keepdims=True)
    x = np.cross(z, up_hint)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=-2)


def _rot_axis(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rodrigues rotations ``[B, 3, 3]`` about unit ``axis [B, 3]`` by ``angle [B]`` radians."""
    k = axis / np.linalg.norm(axis, axis=-1, keepdims=True)
    kx = np.zeros(k.shape[:-1] + (3, 3))
    kx[..., 0, 1], kx[..., 0, 2], kx[..., 1, 2] = -k[..., 2], k[..., 1], -k[..., 0]
    kx = kx - np.swapaxes(kx, -1, -2)
    s, c = np.sin(angle)[..., None, None], np.cos(angle)[..., None, None]
    return np.eye(3) + s * kx + (1 - c) * kx @ kx


@dataclass
class Cameras:
    """A batch of pinhole cameras. ``R [B,3,3]`` world->camera rows, ``center [B,3]`` metres (world),
    ``f [B]`` focal length and ``width``/``height [B]`` image size in pixels; principal point at the centre."""

    R: np.ndarray
    center: np.ndarray
    f: np.ndarray
    width: np.ndarray
    height: np.ndarray

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points ``[B, ..., 3]`` -> camera frame (x right, y down, z forward), metres."""
        shape = points.shape
        p = points.reshape(shape[0], -1, 3) - self.center[:, None]
        return np.einsum("bij,bnj->bni", self.R, p).reshape(shape)

    def project(self, cam_points: np.ndarray) -> np.ndarray:
        """Camera-frame points ``[B, ..., 3]`` -> pixels ``[B, ..., 2]``."""
        extra = (slice(None),) + (None,) * (cam_points.ndim - 2)
        z = np.maximum(cam_points[..., 2], 1e-3)
        u = self.f[extra] * cam_points[..., 0] / z + self.width[extra] / 2
        v = self.f[extra] * cam_points[..., 1] / z + self.height[extra] / 2
        return np.stack([u, v], axis=-1)

    def unproject(self, pixels: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Pixels ``[B, ..., 2]`` and depths ``[B, ...]`` -> camera-frame points (inverse of :meth:`project`)."""
        extra = (slice(None),) + (None,) * (pixels.ndim - 2)
        x = (pixels[..., 0] - self.width[extra] / 2) * depth / self.f[extra]
        y = (pixels[..., 1] - self.height[extra] / 2) * depth / self.f[extra]
        return np.stack([x, y, depth], axis=-1)


IMAGE_SIZES = np.array([[1920, 1080], [1280, 720], [1080, 1920], [720, 1280]], dtype=np.float64)


def sample_cameras(rng: np.random.Generator, points: np.ndarray, min_depth: float = 1.0) -> Cameras:
    """Random cameras looking at the people in ``points [B, T, J, 3]`` (world, metres, +Y up, floor at y=0).

    Horizontal FOV 40-80 deg; azimuth uniform; camera height 0.3-2.5 m; the person's apparent height is
    25-85 % of the image height at the middle frame; the person's centre lands anywhere within the middle 80 %
    of the frame; roll within +-4 deg. The camera is pushed back along its axis if any joint of the window
    would come closer than ``min_depth``.
    """
    b, t = points.shape[:2]
    size = IMAGE_SIZES[rng.integers(0, len(IMAGE_SIZES), b)]
    width, height = size[:, 0], size[:, 1]
    hfov = np.deg2rad(rng.uniform(40, 80, b))
    f = width / 2 / np.tan(hfov / 2)
    mid = points[:, t // 2]
    centre = mid.mean(axis=1)
    stature = np.maximum(mid[:, :, 1].max(axis=1) - np.minimum(mid[:, :, 1].min(axis=1), 0.0), 0.8)
    frac = rng.uniform(0.25, 0.85, b)
    dist = np.clip(f * stature / (frac * height), 1.5, 40.0)
    azim = rng.uniform(0, 2 * np.pi, b)
    cam_h = rng.uniform(0.3, 2.5, b)
    horiz = np.sqrt(np.maximum(dist ** 2 - (cam_h - centre[:, 1]) ** 2, 0.25))
    cam = np.stack([centre[:, 0] + horiz * np.sin(azim), cam_h, centre[:, 2] + horiz * np.cos(azim)], axis=1)
    up = np.array([0.0, 1.0, 0.0])
    R = look_rotation(centre - cam, np.broadcast_to(up, (b, 3)))
    # Put the person off-centre: turn the camera by yaw/pitch offsets within the field of view, then roll.
    vfov = 2 * np.arctan(height / 2 / f)
    yaw = rng.uniform(-0.4, 0.4, b) * hfov
    pitch = rng.uniform(-0.4, 0.4, b) * vfov
    roll = np.deg2rad(rng.uniform(-4, 4, b))
    e = np.eye(3)
    turn = (_rot_axis(np.broadcast_to(e[2], (b, 3)), roll) @ _rot_axis(np.broadcast_to(e[0], (b, 3)), pitch)
            @ _rot_axis(np.broadcast_to(e[1], (b, 3)), yaw))
    R = turn @ R
    cams = Cameras(R, cam, f, width, height)
    z = cams.to_camera(points)[..., 2].reshape(b, -1).min(axis=1)
    push = np.maximum(min_depth - z, 0.0)
    cams.center = cam - push[:, None] * R[:, 2]
    return cams


# ------------------------------------------------------------------------------------------ 2D noise
@dataclass
class NoiseConfig:
    """Detector-like noise on COCO-17 pixels. Sigmas are fractions of the person's box height."""

    jitter: tuple[float, float] = (0.003, 0.015)  # per-sample range of the base per-joint sigma
    speed_gain: float = 0.15  # extra sigma per (pixels moved per frame)
    bias: float = 0.008  # per-window constant offset sigma of every joint
    miss_rate: tuple[float, float] = (0.0, 0.04)  # per-sample range of per-joint-per-frame miss probability
    miss_run: int = 6  # a miss lasts 1..miss_run frames
    swap_prob: float = 0.15  # probability per window of a left/right limb swap episode
    swap_run: int = 8  # a swap lasts 1..swap_run frames


_LIMBS_LR = [  # COCO (left, right) index pairs of each limb that can swap
    [(5, 6), (7, 8), (9, 10)], [(7, 8), (9, 10)], [(11, 12), (13, 14), (15, 16)], [(13, 14), (15, 16)],
    [(1, 2), (3, 4)],
]


def add_detector_noise(rng: np.random.Generator, kp: np.ndarray, cfg: NoiseConfig = NoiseConfig()) -> np.ndarray:
    """Noisy COCO-17 detections from clean projected pixels ``kp [B, T, 17, 2]`` -> ``[B, T, 17, 3]`` with scores.

    * gaussian jitter per joint and frame whose sigma grows with the joint's image speed, plus a small constant
      per-window offset per joint,
    * misses: runs of frames where a joint jumps to a neighbouring joint's position or a random spot inside the
      person's box, with a low score (0-0.3),
    * left/right swaps of one limb for a few frames (scores stay high: the detector is confidently wrong).
    Good joints get scores 0.55-1.0.
    """
    b, t = kp.shape[:2]
    lo, hi = kp.min(axis=(1, 2)), kp.max(axis=(1, 2))  # [B, 2]
    box_h = np.maximum(hi[:, 1] - lo[:, 1], 20.0)[:, None, None, None]
    speed = np.zeros(kp.shape[:3])
    speed[:, 1:] = np.linalg.norm(np.diff(kp, axis=1), axis=-1)
    speed[:, 0] = speed[:, min(1, t - 1)]
    base = rng.uniform(*cfg.jitter, (b, 1, 1, 1)) * box_h
    sigma = base + cfg.speed_gain * speed[..., None]
    out = kp + rng.normal(size=kp.shape) * sigma + rng.normal(size=(b, 1, 17, 2)) * cfg.bias * box_h
    score = rng.uniform(0.55, 1.0, (b, t, 17))
    # misses
    rate = rng.uniform(*cfg.miss_rate, (b, 1, 1)) / max(1.0, (cfg.miss_run + 1) / 2)
    starts = rng.random((b, t, 17)) < rate
    if starts.any():
        bi, ti, ji = np.nonzero(starts)
        runs = rng.integers(1, cfg.miss_run + 1, len(bi))
        neighbour = rng.integers(0, 17, len(bi))
        use_random = rng.random(len(bi)) < 0.5
        for k in range(len(bi)):
            sl = slice(ti[k], min(t, ti[k] + runs[k]))
            if use_random[k]:
                spot = lo[bi[k]] + rng.random(2) * (hi[bi[k]] - lo[bi[k]])
                out[bi[k], sl, ji[k]] = spot
            else:
                out[bi[k], sl, ji[k]] = out[bi[k], sl, neighbour[k]]
            score[bi[k], sl, ji[k]] = rng.uniform(0.0, 0.3)
    # swaps
    swaps = np.nonzero(rng.random(b) < cfg.swap_prob)[0]
    for bi in swaps:
        limb = _LIMBS_LR[rng.integers(0, len(_LIMBS_LR))]
        t0 = rng.integers(0, t)
        sl = slice(t0, min(t, t0 + rng.integers(1, cfg.swap_run + 1)))
        for l, r in limb:
            out[bi, sl, [l, r]] = out[bi, sl, [r, l]]
    return np.concatenate([out, score[..., None]], axis=-1).astype(np.float32)


# ------------------------------------------------------------------------------------------ batches
@dataclass
class Batch:
    """Model input and target. ``inputs [B, T, 17, 2]`` normalised H36M-17 2D; ``targets [B, T, 17, 3]``
    root-relative camera-frame H36M-17 3D in metres (all T frames; the trainer picks the output frames)."""

    inputs: np.ndarray
    targets: np.ndarray


def make_batch(rng: np.random.Generator, coco_world: np.ndarray, h36m_world: np.ndarray, noisy: bool,
               augment: bool = True, noise: NoiseConfig = NoiseConfig(), cams: Cameras | None = None,
               placement_prob: float = 0.0) -> Batch:
    """Turn world-space windows into a training/validation batch.

    Args:
        rng: random generator (cameras, scaling, noise, flips).
        coco_world: ``[B, T, 17, 3]`` COCO-17 world joints (metres, +Y up).
        h36m_world: ``[B, T, 17, 3]`` H36M-17 world joints from the same frames.
        noisy: add detector noise (then cleaned like inference does) instead of exact projections.
        augment: apply bone-length scaling and random horizontal flips.
        noise: noise parameters.
        cams: fixed cameras to use instead of sampling new ones.
        placement_prob: share of samples whose projected COCO shoulders and hips are moved to where 2D
            detectors put them (``placement.detector_placement``); the 3D targets stay as they are.
    """
    from services.lifter3d.keypoints2d import fill_low_confidence, smooth_time

    b = coco_world.shape[0]
    h = H36M17.index
    pts = np.concatenate([coco_world, h36m_world[:, :, [h("spine"), h("thorax"), h("head_top")]]], axis=2)
    if augment:
        overall = rng.uniform(0.85, 1.15, b)
        scales = {g: overall * rng.uniform(0.9, 1.1, b) for g in _GROUPS}
        floor = pts[..., 1].min(axis=(1, 2))
        pts = scale_bones(pts.astype(np.float64), scales)
        # scaling keeps the pelvis fixed, so put the lowest point of the window back where it was
        pts[..., 1] += (floor - pts[..., 1].min(axis=(1, 2)))[:, None, None]
    if cams is None:
        cams = sample_cameras(rng, pts)
    cam_pts = cams.to_camera(pts)
    coco_cam = cam_pts[:, :, :17]
    if placement_prob > 0:
        moved = rng.random(b) < placement_prob
        if moved.any():
            coco_cam = coco_cam.copy()
            coco_cam[moved] = detector_placement(rng, coco_cam[moved])
    pix = cams.project(coco_cam)
    if noisy:
        kp = add_detector_noise(rng, pix, noise)
        kp = smooth_time(fill_low_confidence(kp, threshold=0.3), sigma=1.0)
    else:
        kp = np.concatenate([pix, np.ones(pix.shape[:-1] + (1,))], axis=-1)
    h36_2d = coco17_to_h36m17(kp)[..., :2]
    w, hh = cams.width[:, None, None, None], cams.height[:, None, None, None]
    inputs = h36_2d / w * 2 - np.concatenate([np.ones_like(w), hh / w], axis=-1)
    target = h36m_from_points(cam_pts)
    target = target - target[:, :, :1]
    if augment:
        flip = rng.random(b) < 0.5
        inputs[flip] = inputs[flip][:, :, H36M_FLIP] * np.array([-1.0, 1.0])
        target[flip] = target[flip][:, :, H36M_FLIP] * np.array([-1.0, 1.0, 1.0])
    return Batch(inputs.astype(np.float32), target.astype(np.float32))


class WindowSampler:
    """Random fixed-length windows from a set of takes, weighted by how many windows each take holds."""

    def __init__(self, data: MocapData, takes: np.ndarray, length: int):
        """
        Args:
            data: all takes.
            takes: indices of the takes to draw from.
            length: frames per window; shorter takes are edge-padded.
        """
        self.data, self.length = data, length
        self.takes = np.asarray(takes)
        counts = np.maximum(data.lengths[self.takes] - length + 1, 1).astype(np.float64)
        self.p = counts / counts.sum()

    def sample(self, rng: np.random.Generator, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """``(coco17 [B, T, 17, 3], h36m17 [B, T, 17, 3])`` world joints of ``batch`` random windows.

        Also varies playback speed by 0.8-1.25x (linear resampling) to cover other frame rates and tempos.
        """
        picks = self.takes[rng.choice(len(self.takes), batch, p=self.p)]
        speed = rng.uniform(0.8, 1.25, batch)
        span = (self.length - 1) * speed
        n = self.data.lengths[picks]
        start = rng.random(batch) * np.maximum(n - 1 - span, 0)
        t = start[:, None] + np.arange(self.length)[None] * speed[:, None]
        t = np.minimum(t, (n - 1)[:, None])
        i0 = np.floor(t).astype(np.int64)
        frac = (t - i0)[..., None, None]
        i1 = np.minimum(i0 + 1, (n - 1)[:, None])
        base = self.data.starts[picks][:, None]
        out = []
        for arr in (self.data.coco17, self.data.h36m17):
            out.append(arr[base + i0] * (1 - frac) + arr[base + i1] * frac)
        return out[0], out[1]
