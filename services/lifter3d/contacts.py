"""Foot contacts in world space and pinning planted feet so they do not slide.

World frame: metres, y up, floor at y = 0 (see :mod:`services.lifter3d.world`). The skeleton (Human3.6M-17)
has no toes or soles: a planted foot is an ankle joint resting :data:`ANKLE_HEIGHT_M` above the floor.
"""
from __future__ import annotations

import numpy as np

from services.common.skeletons import H36M17

#: Height of the ankle joint above the floor when the foot is flat on it, metres (an adult's ankle joint
#: centre; the Bandai-Namco mocap skeleton's planted ``Foot`` joints sit 0.117 m up, a lifted skeleton is often
#: a little smaller).
ANKLE_HEIGHT_M = 0.10
#: Foot order of every contact array: left, right (H36M-17 ankle indices).
FEET = (H36M17.index("left_ankle"), H36M17.index("right_ankle"))
#: A foot is planted while its ankle is at most this far above :data:`ANKLE_HEIGHT_M` ...
CONTACT_HEIGHT_M = 0.08
#: ... and moves horizontally slower than this, metres per second, or than :data:`CONTACT_SPEED_SHARE` of the
#: body's (pelvis's) horizontal speed when that is higher (running: the lifted stance foot is never quite still).
CONTACT_SPEED_MPS = 0.8
CONTACT_SPEED_SHARE = 0.8
#: A foot's say in the body shift ramps up over this long after it lands and down before it lifts, seconds
#: (so the shift does not jump where the second foot lands or the first one lifts).
PIN_RAMP_S = 0.1


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of every run of True in a 1-D boolean array."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]))


def clean_runs(mask: np.ndarray, min_run: int, max_hole: int) -> np.ndarray:
    """Fill holes of at most ``max_hole`` frames inside contact, then drop contact runs shorter than
    ``min_run`` frames (flicker from noise). ``mask [F]`` boolean; returns a new array."""
    out = mask.astype(bool).copy()
    for start, stop in _runs(~out):
        if start > 0 and stop < len(out) and stop - start <= max_hole:
            out[start:stop] = True
    for start, stop in _runs(out):
        if stop - start < min_run:
            out[start:stop] = False
    return out


#: Half-width of the window over which the local resting height of the ankles is taken, seconds.
REST_WINDOW_S = 0.5


def local_rest_height(heights: np.ndarray, fps: float) -> np.ndarray:
    """``[F]`` resting height of the ankles around every frame: the higher of :data:`ANKLE_HEIGHT_M` and
    the 10th percentile of the lower ankle's height over +-:data:`REST_WINDOW_S` (whole windows of at least
    10 frames; fewer frames: :data:`ANKLE_HEIGHT_M`). Local, because an estimated floor that is slightly
    tilted leaves a person who crosses it higher at one end than at the other.

    Args:
        heights: ``[F, 2]`` ankle heights above the floor, metres.
        fps: frames per second.
    """
    lower = np.asarray(heights, dtype=np.float64).min(axis=1)
    rest = np.full(len(lower), ANKLE_HEIGHT_M)
    half = max(5, int(round(REST_WINDOW_S * fps)))
    if len(lower) < 10:
        return rest
    for f in range(len(lower)):
        window = lower[max(0, f - half):f + half + 1]
        rest[f] = max(ANKLE_HEIGHT_M, float(np.percentile(window, 10)))
    return rest


def detect_contacts(world: np.ndarray, fps: float, seen: np.ndarray | None = None,
                    height_m: float = CONTACT_HEIGHT_M, speed_mps: float = CONTACT_SPEED_MPS,
                    speed_share: float = CONTACT_SPEED_SHARE) -> np.ndarray:
    """Planted feet of one person, ``[F, 2]`` boolean (left, right).

    A foot is planted in a frame when its ankle was seen in 2D, is low (within ``height_m`` of the local
    resting height, :func:`local_rest_height`) and slow (horizontal speed, central difference, below ``speed_mps`` or ``speed_share`` times the
    pelvis's horizontal speed averaged over 0.5 s, whichever is higher); runs are then cleaned with
    :func:`clean_runs` (holes up to 0.1 s filled, runs under 0.1 s dropped). A single frame is planted when
    its ankle is seen and low.

    Args:
        world: ``[F, 17, 3]`` world joints (metres, y up, floor y = 0).
        fps: frames per second.
        seen: ``[F, 2]`` (left, right) whether the ankle was detected in 2D; a foot outside the picture or
            hidden has a guessed 3D position and is never taken as planted. None: all seen.
    """
    ankles = np.asarray(world, dtype=np.float64)[:, list(FEET)]  # [F, 2, 3]
    low = ankles[..., 1] <= local_rest_height(ankles[..., 1], fps)[:, None] + height_m
    if seen is not None:
        low &= np.asarray(seen, dtype=bool)
    if len(ankles) < 2:
        return low
    horiz = ankles[..., [0, 2]]
    speed = np.linalg.norm(np.gradient(horiz, axis=0), axis=-1) * fps
    pelvis = np.asarray(world, dtype=np.float64)[:, 0, [0, 2]]
    body = np.linalg.norm(np.gradient(pelvis, axis=0), axis=-1) * fps
    half = max(1, int(round(0.25 * fps)))
    body = np.convolve(np.pad(body, half, mode="edge"), np.ones(2 * half + 1) / (2 * half + 1), mode="valid")
    planted = low & (speed <= np.maximum(speed_mps, speed_share * body)[:, None])
    short = max(1, int(round(0.1 * fps)))
    return np.stack([clean_runs(planted[:, k], short, short) for k in range(2)], axis=1)


def pin_planted_feet(world: np.ndarray, contacts: np.ndarray, fps: float) -> np.ndarray:
    """Move the whole body so planted feet stay put and rest on the floor.

    For every run of frames in which a foot is planted, its target is its mean horizontal position over the
    run at height :data:`ANKLE_HEIGHT_M`. In a frame with planted feet the body is shifted by the weighted mean
    of (target - ankle) over the planted feet, a foot's weight ramping from 0 to 1 over :data:`PIN_RAMP_S`
    after it lands and back before it lifts (one planted foot is pinned exactly; the shift stays continuous
    when the second lands). Between runs the shift is interpolated linearly, so the body blends from one
    contact to the next and jumps keep their height; before the first and after the last run it is held.
    Returns the corrected ``[F, 17, 3]`` (a new array).
    """
    out = np.asarray(world, dtype=np.float64).copy()
    contacts = np.asarray(contacts, dtype=bool)
    if not contacts.any():
        return out
    frames = len(out)
    ramp = max(1.0, PIN_RAMP_S * fps)
    shift_sum = np.zeros((frames, 3))
    weight = np.zeros(frames)
    for k, joint in enumerate(FEET):
        ankle = out[:, joint]
        for start, stop in _runs(contacts[:, k]):
            target = ankle[start:stop].mean(axis=0)
            target[1] = ANKLE_HEIGHT_M
            f = np.arange(start, stop)
            w = np.clip(np.minimum(f - start + 1, stop - f) / ramp, 1e-3, 1.0)[:, None]
            shift_sum[start:stop] += w * (target - ankle[start:stop])
            weight[start:stop] += w[:, 0]
    known = weight > 0
    shift = np.zeros((frames, 3))
    idx = np.arange(frames)
    for c in range(3):
        shift[:, c] = np.interp(idx, idx[known], shift_sum[known, c] / weight[known])
    return out + shift[:, None, :]
