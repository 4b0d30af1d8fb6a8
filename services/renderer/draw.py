"""Drawing with OpenCV: 2D skeletons on a frame and a fixed 3D view panel of grounded skeletons.

Colours are BGR. Each track gets a base colour; its left-side bones are drawn lighter and its
right-side bones darker than the base, the midline in the base colour.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from services.common.skeletons import COCO17, H36M17, Skeleton

TRACK_COLOURS = ((255, 140, 0), (0, 200, 255), (80, 220, 80), (220, 80, 220), (60, 60, 255), (200, 200, 60))
BACKGROUND = (40, 32, 28)
GRID = (90, 84, 80)
MIN_SCORE = 0.3


def track_colour(track_id: int) -> tuple[int, int, int]:
    return TRACK_COLOURS[track_id % len(TRACK_COLOURS)]


def _side_colours(base: tuple[int, int, int]) -> tuple[tuple, tuple, tuple]:
    """(left, right, midline) colours of one track."""
    b = np.array(base, np.float32)
    left = tuple(int(v) for v in b + (255 - b) * 0.55)
    right = tuple(int(v) for v in b * 0.6)
    return left, right, tuple(int(v) for v in b)


def _bone_colour(skeleton: Skeleton, bone: tuple[int, int], colours) -> tuple:
    left, right, mid = colours
    a, b = bone
    if a in skeleton.left or b in skeleton.left:
        return left if not (a in skeleton.right or b in skeleton.right) else mid
    if a in skeleton.right or b in skeleton.right:
        return right
    return mid


def draw_skeleton_2d(image: np.ndarray, keypoints: np.ndarray, track_id: int, scale: float = 1.0,
                     min_score: float = MIN_SCORE) -> None:
    """Draw COCO-17 ``keypoints`` [17, 3] (x px, y px, score, in original-frame pixels) on
    ``image`` in place, after multiplying coordinates by ``scale``. Joints under ``min_score``
    and their bones are left out."""
    colours = _side_colours(track_colour(track_id))
    pts = np.round(keypoints[:, :2] * scale * 16).astype(np.int32)  # 4 fractional bits
    ok = keypoints[:, 2] >= min_score
    thickness = max(2, int(round(image.shape[0] / 240)))
    for bone in COCO17.bones:
        a, b = bone
        if ok[a] and ok[b]:
            cv2.line(image, tuple(pts[a]), tuple(pts[b]), _bone_colour(COCO17, bone, colours),
                     thickness, cv2.LINE_AA, shift=4)
    for j in np.flatnonzero(ok):
        cv2.circle(image, tuple(pts[j]), thickness * 16, (255, 255, 255), -1, cv2.LINE_AA, shift=4)


class View3D:
    """A fixed orthographic camera on the scene: from the front-left, slightly above.

    World frame (the lifter's): x right, y up, z away from the video camera, metres. The view
    turns the scene by ``azimuth_deg`` about y and tilts it by ``elevation_deg`` about x, then
    maps ``extent_m`` metres around ``centre`` (x, z on the ground) to the panel's width.
    """

    def __init__(self, size: int, centre_xz: tuple[float, float] = (0.0, 0.0), extent_m: float = 4.0,
                 azimuth_deg: float = 35.0, elevation_deg: float = 18.0, height_m: float = 1.0):
        self.size = size
        self.centre = np.array([centre_xz[0], height_m, centre_xz[1]], np.float64)
        self.extent = extent_m
        self.scale = size / (extent_m * 1.25)
        az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
        yaw = np.array([[math.cos(az), 0, math.sin(az)], [0, 1, 0], [-math.sin(az), 0, math.cos(az)]])
        # tilt so that points farther from the video camera (larger z) rise on the panel: seen from above, in front
        pitch = np.array([[1, 0, 0], [0, math.cos(el), math.sin(el)], [0, -math.sin(el), math.cos(el)]])
        self.rotation = pitch @ yaw
        self._background = self._draw_background()

    @classmethod
    def fitted(cls, size: int, joints: np.ndarray) -> "View3D":
        """A view framing every grounded joint ``joints`` [N, 3] of the video (fixed for the whole
        render, so the camera never jumps)."""
        if joints.size == 0:
            return cls(size)
        finite = joints[np.all(np.isfinite(joints), axis=1)]
        lo, hi = finite[:, [0, 2]].min(axis=0), finite[:, [0, 2]].max(axis=0)
        extent = float(max(3.0, (hi - lo).max() + 1.5, finite[:, 1].max() + 0.5))
        return cls(size, centre_xz=tuple((lo + hi) / 2), extent_m=extent)

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points [..., 3] (metres) -> panel pixels [..., 2] (float)."""
        cam = (np.asarray(points, np.float64) - self.centre) @ self.rotation.T
        return np.stack([self.size / 2 + cam[..., 0] * self.scale,
                         self.size * 0.55 - cam[..., 1] * self.scale], axis=-1)

    def _draw_background(self) -> np.ndarray:
        panel = np.full((self.size, self.size, 3), BACKGROUND, np.uint8)
        half = self.extent / 2
        steps = np.arange(-half, half + 1e-6, 0.5)
        cx, cz = self.centre[0], self.centre[2]
        for s in steps:
            for a, b in (((cx + s, 0, cz - half), (cx + s, 0, cz + half)),
                         ((cx - half, 0, cz + s), (cx + half, 0, cz + s))):
                pa, pb = self.project(np.array([a, b]))
                cv2.line(panel, _pt(pa), _pt(pb), GRID, 1, cv2.LINE_AA, shift=4)
        origin = np.array([cx - half, 0, cz + half])  # back-left corner of the grid
        for axis, colour, label in ((0, (60, 60, 230), "x"), (1, (60, 200, 60), "y"), (2, (230, 120, 60), "z")):
            tip = origin.copy()
            tip[axis] += 0.5
            po, pt = self.project(np.array([origin, tip]))
            cv2.arrowedLine(panel, _pt(po), _pt(pt), colour, 2, cv2.LINE_AA, shift=4, tipLength=0.2)
            cv2.putText(panel, label, (int(pt[0]) + 4, int(pt[1]) + 4), cv2.FONT_HERSHEY_SIMPLEX,
                        0.45, colour, 1, cv2.LINE_AA)
        cv2.putText(panel, "3D (m), grid 0.5 m", (10, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                    (200, 200, 200), 1, cv2.LINE_AA)
        return panel

    def render(self, skeletons: list[tuple[int, np.ndarray]]) -> np.ndarray:
        """A fresh panel ``[size, size, 3]`` with each (track_id, grounded [17, 3]) skeleton."""
        panel = self._background.copy()
        thickness = max(2, self.size // 240)
        for track_id, joints in skeletons:
            if joints is None or not np.all(np.isfinite(joints)):
                continue
            colours = _side_colours(track_colour(track_id))
            shadow = joints.copy()
            shadow[:, 1] = 0.0
            p2, ps = self.project(joints), self.project(shadow)
            for a, b in H36M17.bones:
                cv2.line(panel, _pt(ps[a]), _pt(ps[b]), (60, 52, 48), thickness, cv2.LINE_AA, shift=4)
            for bone in H36M17.bones:
                cv2.line(panel, _pt(p2[bone[0]]), _pt(p2[bone[1]]), _bone_colour(H36M17, bone, colours),
                         thickness, cv2.LINE_AA, shift=4)
            for p in p2:
                cv2.circle(panel, _pt(p), thickness * 16, (255, 255, 255), -1, cv2.LINE_AA, shift=4)
        return panel


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(p[0] * 16)), int(round(p[1] * 16))
