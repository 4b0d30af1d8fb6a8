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
#: ... and moves horizontally slower than this, metres per second.
CONTACT_SPEED_MPS = 0.45


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


def detect_contacts(world: np.ndarray, fps: float, height_m: float = CONTACT_HEIGHT_M,
                    speed_mps: float = CONTACT_SPEED_MPS) -> np.ndarray:
    """Planted feet of one person, ``[F, 2]`` boolean (left, right).

    A foot is planted in a frame when its ankle is low (within ``height_m`` of its resting height above the
    floor) and slow (horizontal speed, central difference, below ``speed_mps``); runs are then cleaned with
    :func:`clean_runs` (holes up to 0.1 s filled, runs under 0.1 s dropped). A single frame is planted when
    its ankle is low.

    Args:
        world: ``[F, 17, 3]`` world joints (metres, y up, floor y = 0).
        fps: frames per second.
    """
    ankles = np.asarray(world, dtype=np.float64)[:, list(FEET)]  # [F, 2, 3]
    low = ankles[..., 1] <= ANKLE_HEIGHT_M + height_m
    if len(ankles) < 2:
        return low
    horiz = ankles[..., [0, 2]]
    speed = np.linalg.norm(np.gradient(horiz, axis=0), axis=-1) * fps
    planted = low & (speed <= speed_mps)
    short = max(1, int(round(0.1 * fps)))
    return np.stack([clean_runs(planted[:, k], short, short) for k in range(2)], axis=1)


def pin_planted_feet(world: np.ndarray, contacts: np.ndarray, fps: float) -> np.ndarray:
    """Move the whole body so planted feet stay put and rest on the floor.

    For every run of frames in which a foot is planted, its target is its mean horizontal position over the
    run at height :data:`ANKLE_HEIGHT_M`. In a frame with planted feet the body is shifted by the mean of
    (target - ankle) over the planted feet; between runs the shift is interpolated linearly (so the body
    blends from one contact to the next, and jumps keep their height), before the first and after the last
    run it is held; finally it is smoothed with a gaussian of 1/15 s to remove steps where the second foot
    lands. Returns the corrected ``[F, 17, 3]`` (a new array).
    """
    out = np.asarray(world, dtype=np.float64).copy()
    contacts = np.asarray(contacts, dtype=bool)
    if not contacts.any():
        return out
    frames = len(out)
    shift_sum = np.zeros((frames, 3))
    count = np.zeros(frames)
    for k, joint in enumerate(FEET):
        ankle = out[:, joint]
        for start, stop in _runs(contacts[:, k]):
            target = ankle[start:stop].mean(axis=0)
            target[1] = ANKLE_HEIGHT_M
            shift_sum[start:stop] += target - ankle[start:stop]
            count[start:stop] += 1
    known = count > 0
    shift = np.zeros((frames, 3))
    idx = np.arange(frames)
    for c in range(3):
        shift[:, c] = np.interp(idx, idx[known], shift_sum[known, c] / count[known])
    sigma = fps / 15.0
    if frames > 1 and sigma > 0:
        radius = int(np.ceil(3 * sigma))
        taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
        taps /= taps.sum()
        padded = np.pad(shift, ((radius, radius), (0, 0)), mode="edge")
        shift = np.stack([np.convolve(padded[:, c], taps, mode="valid") for c in range(3)], axis=1)
    return out + shift[:, None, :]
