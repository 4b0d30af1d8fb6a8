"""Inference: COCO-17 2D keypoints of one person over time -> 3D Human3.6M-17 poses (pure functions, no I/O
besides loading weights).

Units and axes:

* input keypoints: pixels, origin at the top-left corner, x to the right, y down, plus a detector score;
* ``camera``: the model's output, metres, camera frame (x right, y down, z away from the camera),
  root-relative (pelvis at the origin) -- the Human3.6M / GAST-Net convention;
* ``world``: the same poses in a y-up frame: x right (as the camera sees it), y up, z towards the camera;
  the camera's pitch is estimated from the body's average up direction over the sequence (people stand mostly
  upright) and removed; camera roll is assumed to be about zero; still pelvis-centred;
* ``grounded``: ``world`` moved vertically so the feet stand on the plane y = 0 (see :func:`ground`).
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from services.common.skeletons import H36M17, H36M17_PARENTS, coco17_to_h36m17
from services.lifter3d.keypoints2d import fill_low_confidence, normalize_screen, smooth_time
from services.lifter3d.model import GASTNet, TemporalLifterBase, build_model

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "gastnet_bandai_27f.pt"
_ANKLES = (H36M17.index("left_ankle"), H36M17.index("right_ankle"))


def _official_config(state: dict[str, torch.Tensor]) -> dict:
    """Model config of an official GAST-Net state dict, read from its tensor shapes."""
    channels = int(state["expand_conv.weight"].shape[0])
    widths = [int(state["expand_conv.weight"].shape[2])]
    i = 0
    while f"layers_conv.{2 * i}.weight" in state:
        widths.append(int(state[f"layers_conv.{2 * i}.weight"].shape[2]))
        i += 1
    return {"kind": "gastnet", "channels": channels, "filter_widths": widths}


def _safe_load(path: Path, device: str):
    """``torch.load`` restricted to tensors and plain data (numpy scalars allowed: some checkpoints hold them)."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        allowed = [np.core.multiarray.scalar, np.dtype] + [type(np.dtype(t)) for t in ("f8", "f4", "i8", "i4")]
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location=device, weights_only=True)


def load_lifter(weights_path: str | Path = DEFAULT_WEIGHTS, device: str = "cpu",
                causal: bool = False) -> TemporalLifterBase:
    """Load a lifter in eval mode from our checkpoint or from an official GAST-Net checkpoint.

    Args:
        weights_path: our checkpoint (``{"model": state_dict, "config": {...}}`` written by
            :mod:`training.train`) or an official GAST-Net file (``{"model_pos": state_dict, ...}``,
            e.g. ``27_frame_model.bin``: filter widths and channels are read from the tensor shapes).
        device: torch device to put the model on.
        causal: for official checkpoints only -- build the causal variant (``27_frame_model_causal.bin``);
            the weights do not record it. Our checkpoints carry it in their config.

    Raises:
        FileNotFoundError: when the file is missing; the message names the file and how to get it. A model
            with random weights is never returned.
        ValueError: when the file is neither format.
    """
    path = Path(weights_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"3D lifter weights not found: {path}. Supply one of: (a) our trained checkpoint "
            f"services/lifter3d/weights/gastnet_bandai_27f.pt (ships with the repository; re-create it with "
            f"`python -m training.train --out {DEFAULT_WEIGHTS.relative_to(DEFAULT_WEIGHTS.parents[3])}`), "
            f"or (b) an official GAST-Net checkpoint such as 27_frame_model.bin from the GAST-Net authors "
            f"(non-commercial licence), placed at {path}.")
    ckpt = _safe_load(path, device)
    if isinstance(ckpt, dict) and "model_pos" in ckpt:
        state = {k.removeprefix("module."): v for k, v in ckpt["model_pos"].items()}
        config = _official_config(state) | {"causal": causal}
    elif isinstance(ckpt, dict) and "model" in ckpt and "config" in ckpt:
        state, config = ckpt["model"], dict(ckpt["config"])
    else:
        raise ValueError(f"{path} is neither an hpe3d lifter checkpoint (keys 'model', 'config') nor an official "
                         f"GAST-Net checkpoint (key 'model_pos')")
    model = build_model(config)
    model.load_state_dict(state)
    return model.to(device).eval()


@dataclass
class LiftResult:
    """3D poses of one sequence, all ``[F, 17, 3]`` metres, Human3.6M-17 joint order (see the module doc)."""

    camera: np.ndarray  #: root-relative, camera frame (x right, y down, z forward)
    world: np.ndarray  #: root-relative, y up, x right, z towards the camera
    grounded: np.ndarray  #: ``world`` with the feet on the plane y = 0
    pitch_deg: float  #: estimated camera pitch (positive: the camera looks down)
    keypoints_2d: np.ndarray  #: the cleaned COCO-17 keypoints ``[F, 17, 3]`` that were lifted
    camera_raw: np.ndarray  #: the model's root-relative camera-frame output before bone-length fixing


def camera_to_world(poses: np.ndarray) -> tuple[np.ndarray, float]:
    """Rotate camera-frame poses ``[F, 17, 3]`` into the y-up frame; returns ``(world, pitch in degrees)``.

    The up direction is the median over frames of the unit vector from the ankles' midpoint to the thorax.
    Only the pitch (rotation about the camera x axis) is removed; roll is assumed to be zero.
    """
    flipped = poses * np.array([1.0, -1.0, -1.0])  # x right, y up, z towards the camera (a 180 deg turn about x)
    up = flipped[:, H36M17.index("thorax")] - flipped[:, list(_ANKLES)].mean(axis=1)
    up = np.median(up / (np.linalg.norm(up, axis=-1, keepdims=True) + 1e-9), axis=0)
    alpha = np.arctan2(-up[2], up[1])  # turn about x so that up has no z component
    c, s = np.cos(alpha), np.sin(alpha)
    rot = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    # With the camera tilted down, the body's up leans towards the camera (+z) in the flipped frame: alpha < 0.
    return flipped @ rot.T, float(np.rad2deg(-alpha))


def fix_bone_lengths(poses: np.ndarray) -> np.ndarray:
    """Give every bone its median length over the sequence, keeping each bone's direction.

    ``poses [F, 17, 3]`` root-relative H36M-17; the skeleton is rebuilt outwards from the pelvis along
    :data:`H36M17_PARENTS`, so a person's limbs do not stretch or shrink from frame to frame.
    """
    out = poses.copy()
    for child, parent in enumerate(H36M17_PARENTS):
        if parent < 0:
            continue
        vec = poses[:, child] - poses[:, parent]
        length = np.linalg.norm(vec, axis=-1, keepdims=True)
        out[:, child] = out[:, parent] + vec / np.maximum(length, 1e-9) * np.median(length)
    return out


def ground(world: np.ndarray, mode: str = "frame") -> np.ndarray:
    """Shift root-relative y-up poses so the feet are on y = 0.

    Args:
        world: ``[F, 17, 3]`` y-up poses.
        mode: ``"frame"`` -- every frame's lower ankle touches y = 0 (feet on the ground; root-relative poses
            carry no vertical root motion, so jumps are not reproduced); ``"sequence"`` -- one shift for the
            whole sequence, putting the lowest ankle over the sequence at y = 0.
    """
    low = world[:, list(_ANKLES), 1].min(axis=1)
    if mode == "frame":
        shift = -low[:, None]
    elif mode == "sequence":
        shift = np.full((len(world), 1), -low.min())
    else:
        raise ValueError(f"mode must be 'frame' or 'sequence', got {mode!r}")
    out = world.copy()
    out[..., 1] += shift
    return out


def lift_sequence(keypoints_coco17: np.ndarray, width: float, height: float, model: TemporalLifterBase,
                  score_threshold: float = 0.3, max_gap: int = 15, smooth_sigma: float = 1.0,
                  flip_augment: bool = True, ground_mode: str = "frame", fixed_bones: bool = True) -> LiftResult:
    """Lift one person's 2D track to 3D.

    Args:
        keypoints_coco17: ``[F, 17, 3]`` COCO-17 pixel x, y and score per frame (F >= 1).
        width: frame width in pixels.
        height: frame height in pixels.
        model: from :func:`load_lifter`.
        score_threshold: joints scoring below this are treated as missing and filled from neighbouring
            frames (linear interpolation; gaps longer than ``max_gap`` frames hold the last good value).
        max_gap: longest gap, in frames, that is interpolated.
        smooth_sigma: gaussian smoothing of the 2D tracks along time, in frames (0: none).
        flip_augment: also lift the mirrored input and average (test-time augmentation).
        ground_mode: see :func:`ground`.
        fixed_bones: post-process with :func:`fix_bone_lengths` (the raw output stays in ``camera_raw``).

    The sequence is edge-padded by the receptive field (13 frames each side for 27 frames) so every input
    frame gets a pose, and the model runs once over the whole sequence.
    """
    kp = np.asarray(keypoints_coco17, dtype=np.float32)
    if kp.ndim != 3 or kp.shape[1:] != (17, 3):
        raise ValueError(f"keypoints must be [F, 17, 3] (x, y, score), got {list(kp.shape)}")
    if len(kp) == 0:
        raise ValueError("empty keypoint sequence")
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    kp = smooth_time(fill_low_confidence(kp, threshold=score_threshold, max_gap=max_gap), sigma=smooth_sigma)
    x = normalize_screen(coco17_to_h36m17(kp)[..., :2], width, height)[None]
    if flip_augment:
        x = np.concatenate([x, x[:, :, H36M17.flip_permutation] * np.array([-1.0, 1.0], dtype=np.float32)])
    left = model.output_offset()
    right = model.receptive_field() - 1 - left
    x = np.pad(x, ((0, 0), (left, right), (0, 0), (0, 0)), mode="edge")
    device = next(model.parameters()).device
    with torch.no_grad():
        pred = model(torch.from_numpy(x).float().to(device)).cpu().numpy().astype(np.float64)
    if flip_augment:
        pred[1] = pred[1][:, H36M17.flip_permutation] * np.array([-1.0, 1.0, 1.0])
        pred = pred.mean(axis=0, keepdims=True)
    raw = pred[0] - pred[0][:, :1]
    cam = fix_bone_lengths(raw) if fixed_bones else raw
    world, pitch = camera_to_world(cam)
    return LiftResult(cam.astype(np.float32), world.astype(np.float32),
                      ground(world, ground_mode).astype(np.float32), pitch, kp, raw.astype(np.float32))


__all__ = ["LiftResult", "load_lifter", "lift_sequence", "camera_to_world", "fix_bone_lengths", "ground", "GASTNet"]
