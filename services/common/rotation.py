"""Display rotation: from a stream's display matrix to upright frames.

Conventions. PyAV's ``VideoFrame.rotation`` (FFmpeg's display matrix) is the counter-clockwise
angle in degrees to turn the stored picture by to show it. hpe3d reports ``rotation_deg`` as the
*clockwise* angle, in {0, 90, 180, 270}, the convention of the legacy ``rotate`` tag that phones
write and ``ffprobe`` used to show. Both describe the same turn: ``clockwise = (-ccw) mod 360``.
"""
from __future__ import annotations

import cv2
import numpy as np

_CV2_CLOCKWISE = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


def clockwise_from_display_ccw(ccw_degrees: float) -> int:
    """Clockwise display rotation in {0, 90, 180, 270} from a counter-clockwise angle (degrees),
    rounded to the nearest quarter turn."""
    return int(round(-float(ccw_degrees) / 90.0)) % 4 * 90


def rotated_size(width: int, height: int, rotation_cw: int) -> tuple[int, int]:
    """(width, height) of a stored ``width`` x ``height`` picture once turned for display."""
    return (height, width) if rotation_cw in (90, 270) else (width, height)


def apply_rotation(image: np.ndarray, rotation_cw: int) -> np.ndarray:
    """Turn a stored picture ``[H, W, C]`` clockwise by ``rotation_cw`` degrees (0/90/180/270)."""
    if rotation_cw == 0:
        return image
    if rotation_cw not in _CV2_CLOCKWISE:
        raise ValueError(f"rotation must be 0, 90, 180 or 270 degrees, got {rotation_cw}")
    return cv2.rotate(image, _CV2_CLOCKWISE[rotation_cw])
