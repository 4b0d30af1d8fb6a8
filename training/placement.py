"""Where 2D detectors put COCO-17 keypoints, as opposed to where a motion-capture skeleton has its joints.

The Bandai-Namco skeleton's shoulder and hip joints are joint centres close to the body's midline: across
the data set the shoulders are 0.20 m apart and the hips 0.13 m, while the shoulder-to-hip distance is
0.39 m. Detectors trained on COCO annotations (BlazePose, HRNet) mark the shoulders on the outer, upper
edge of the shoulder and the hips wider: on real clips BlazePose's shoulder width is 0.6-0.8 of its
shoulder-to-hip distance (mocap: 0.51) and its hip width 0.35-0.45 (mocap: 0.33). A lifter trained on
projected joint centres sees unfamiliar proportions on real video. ``detector_placement`` moves the
COCO-17 shoulders and hips of a 3D pose to detector-like places before projection, with factors drawn
per sample so that no single detector's habits are baked in. The 3D targets are not changed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.common.skeletons import COCO17

_LS, _RS = COCO17.index("left_shoulder"), COCO17.index("right_shoulder")
_LH, _RH = COCO17.index("left_hip"), COCO17.index("right_hip")


@dataclass(frozen=True)
class PlacementRange:
    """Uniform ranges of the per-sample factors."""

    shoulder_widen: tuple[float, float] = (1.2, 1.5)  # shoulder width multiplier, about their midpoint
    shoulder_raise: tuple[float, float] = (0.0, 0.12)  # lift along the trunk, fraction of shoulder-hip distance
    hip_widen: tuple[float, float] = (1.1, 1.4)  # hip width multiplier, about their midpoint


def detector_placement(rng: np.random.Generator, coco: np.ndarray,
                       ranges: PlacementRange = PlacementRange()) -> np.ndarray:
    """Detector-like COCO-17 shoulders and hips for 3D poses ``coco [B, T, 17, 3]`` (any frame, metres).

    One set of factors is drawn per sample (axis 0) and kept over its frames. Returns a new array.
    """
    out = np.array(coco, dtype=np.float64, copy=True)
    b = out.shape[0]
    shape = (b,) + (1,) * (out.ndim - 3)  # broadcasts against [B, T, 3] once given a trailing axis

    def draw(lo_hi: tuple[float, float]) -> np.ndarray:
        return rng.uniform(*lo_hi, b).reshape(shape)

    sh_mid = (out[..., _LS, :] + out[..., _RS, :]) / 2
    hip_mid = (out[..., _LH, :] + out[..., _RH, :]) / 2
    trunk = sh_mid - hip_mid
    widen_sh, lift, widen_hip = draw(ranges.shoulder_widen), draw(ranges.shoulder_raise), draw(ranges.hip_widen)
    for j in (_LS, _RS):
        out[..., j, :] = sh_mid + widen_sh[..., None] * (out[..., j, :] - sh_mid) + lift[..., None] * trunk
    for j in (_LH, _RH):
        out[..., j, :] = hip_mid + widen_hip[..., None] * (out[..., j, :] - hip_mid)
    return out
