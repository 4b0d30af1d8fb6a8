"""2D keypoint clean-up shared by training (noisy samples) and inference (:mod:`services.lifter3d.lift`).

All functions take keypoints ``[..., F, J, 3]`` = (x pixels, y pixels, score) with time on axis -3, and return
new arrays (inputs are not modified).
"""
from __future__ import annotations

import numpy as np


def fill_low_confidence(keypoints: np.ndarray, threshold: float = 0.3, max_gap: int | None = None) -> np.ndarray:
    """Replace joints whose score is below ``threshold`` by linear interpolation in time.

    Args:
        keypoints: ``[..., F, J, 3]`` pixel x, y and score.
        threshold: joints scoring below this are treated as missing.
        max_gap: only gaps up to this many frames are interpolated (None: every gap). Longer gaps and gaps at
            the ends of the sequence are filled with the nearest good value (hold) -- never left as garbage.

    Returns:
        A copy with missing coordinates filled; the scores of filled joints are kept as they were. A joint
        that is missing in every frame keeps its original values.
    """
    out = np.array(keypoints, dtype=np.float32, copy=True)
    flat = out.reshape(-1, *out.shape[-3:])  # [N, F, J, 3]
    frames = np.arange(flat.shape[1])
    for n in range(flat.shape[0]):
        good_all = flat[n, :, :, 2] >= threshold  # [F, J]
        for j in np.nonzero(~good_all.all(axis=0))[0]:
            good = good_all[:, j]
            if not good.any():
                continue
            bad = ~good
            for c in range(2):
                flat[n, bad, j, c] = np.interp(frames[bad], frames[good], flat[n, good, j, c])
            if max_gap is not None:
                _hold_long_gaps(flat[n, :, j], good, max_gap)
    return out


def _hold_long_gaps(track: np.ndarray, good: np.ndarray, max_gap: int) -> None:
    """For gaps longer than ``max_gap`` keep the last good value instead of interpolating (in place)."""
    f = 0
    n = len(good)
    while f < n:
        if good[f]:
            f += 1
            continue
        start = f
        while f < n and not good[f]:
            f += 1
        if f - start > max_gap and start > 0:
            track[start:f, :2] = track[start - 1, :2]


def smooth_time(keypoints: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Gaussian smoothing of x, y along time (edges replicated); scores are left as they are.

    Args:
        keypoints: ``[..., F, J, 3]`` or ``[..., F, J, 2]``.
        sigma: standard deviation of the kernel in frames; 0 returns a copy.
    """
    out = np.array(keypoints, dtype=np.float32, copy=True)
    if sigma <= 0 or out.shape[-3] < 2:
        return out
    radius = int(np.ceil(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    xy = out[..., :2]
    pad = [(0, 0)] * xy.ndim
    pad[-3] = (radius, radius)
    padded = np.pad(xy, pad, mode="edge")
    num = xy.shape[-3]
    acc = np.zeros_like(xy)
    for k, w in enumerate(taps):
        acc += w * np.take(padded, np.arange(k, k + num), axis=-3)
    out[..., :2] = acc
    return out


def normalize_screen(xy: np.ndarray, width: float, height: float) -> np.ndarray:
    """GAST-Net / VideoPose3D screen normalisation: x -> x / w * 2 - 1, y -> y / w * 2 - h / w.

    Keeps the aspect ratio: x spans [-1, 1] and y spans [-h/w, h/w].
    """
    xy = np.asarray(xy, dtype=np.float32)
    return xy / width * 2 - np.array([1.0, height / width], dtype=np.float32)
