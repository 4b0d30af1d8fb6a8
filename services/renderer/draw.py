"""Drawing with OpenCV: 2D skeletons on a frame, and the 3D panel of the people in world coordinates.

Colours are BGR. Each track gets a base colour; its left-side bones are drawn lighter and its right-side
bones darker than the base, the midline in the base colour.

The 3D panel (:class:`View3D`) looks at the world frame (metres, x right, y up, floor y = 0, z towards the
video camera) through an orthographic camera turned ``azimuth_deg`` about y and tilted ``elevation_deg``
down. Per frame it frames the people's bounding volume (:class:`Framing`): the panel's centre follows the
volume's centre and its scale keeps the volume at :data:`FILL` of the panel, both smoothed over time so
the camera glides instead of jumping. It draws the floor grid (fixed to the world, so it slides under a
walking person), ground shadows, each person's pelvis trail over the last :data:`TRAIL_S` seconds, the
skeletons, and an axes gizmo in the lower-left corner.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from services.common.skeletons import COCO17, H36M17, Skeleton

TRACK_COLOURS = ((255, 140, 0), (0, 200, 255), (80, 220, 80), (220, 80, 220), (60, 60, 255), (200, 200, 60))
BACKGROUND = (40, 32, 28)
GRID = (90, 84, 80)
SHADOW = (60, 52, 48)
MIN_SCORE = 0.3
FILL = 0.75           #: share of the panel's height (or width) the people's bounding volume fills
MIN_VIEW_M = 1.0      #: the panel never shows less than this many metres across
SMOOTH_S = 0.4        #: gaussian sigma, in seconds, of the camera's centre and zoom over time
TRAIL_S = 1.5         #: pelvis trail length in seconds
FLOOR_REACH = 6.0     #: the floor grid reaches at most this many view spans from the panel's centre
_PELVIS = H36M17.index("pelvis")
_HEAD = H36M17.index("head_top")


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


def _mix(colour, towards, t: float) -> tuple[int, int, int]:
    return tuple(int(round(c + (d - c) * t)) for c, d in zip(colour, towards))


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


def view_rotation(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """World -> camera rotation [3, 3]: camera x right, y up on the panel, z towards the viewer. The
    scene turns ``azimuth_deg`` about y, then tilts so the floor is seen ``elevation_deg`` from above."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    yaw = np.array([[math.cos(az), 0, math.sin(az)], [0, 1, 0], [-math.sin(az), 0, math.cos(az)]])
    # world z points towards the video camera, i.e. towards the viewer: tilting so that nearer floor points
    # (larger z) sink on the panel shows the floor from above
    pitch = np.array([[1, 0, 0], [0, math.cos(el), -math.sin(el)], [0, math.sin(el), math.cos(el)]])
    return pitch @ yaw


def _gaussian_smooth(values: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Smooth [F, ...] along frames with a gaussian (sigma in frames; <= 0: unchanged). The ends are padded
    by point reflection, so steady motion (a person walking at constant speed) is not pulled back there."""
    if sigma_frames <= 0 or len(values) < 2:
        return values
    radius = int(math.ceil(3 * sigma_frames))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_frames) ** 2)
    kernel /= kernel.sum()
    head = 2 * values[0] - values[1:radius + 1][::-1]
    tail = 2 * values[-1] - values[-radius - 1:-1][::-1]
    padded = np.concatenate([np.repeat(head[:1], radius - len(head), 0), head, values,
                             tail, np.repeat(tail[-1:], radius - len(tail), 0)])
    return np.stack([np.tensordot(kernel, padded[i:i + 2 * radius + 1], axes=(0, 0))
                     for i in range(len(values))])


@dataclass(frozen=True)
class Framing:
    """Per-frame camera placement of the 3D panel: ``centres`` [F, 3] world point (metres) drawn at the
    panel's centre, ``spans`` [F] metres shown across the panel's height (and width: the panel is square)."""

    centres: np.ndarray
    spans: np.ndarray

    @classmethod
    def follow(cls, joints_per_frame: list[np.ndarray], fps: float, rotation: np.ndarray,
               smooth_s: float = SMOOTH_S) -> "Framing":
        """Frame each frame's joints (``[N, 3]`` world metres, possibly empty) so their projected box fills
        :data:`FILL` of the panel, smoothed over ``smooth_s`` seconds. Frames with nobody take the nearest
        framed frame's placement; a video with nobody at all looks at the origin, 2 m across."""
        count = len(joints_per_frame)
        centres, spans = np.zeros((count, 3)), np.zeros(count)
        known = np.zeros(count, bool)
        for f, joints in enumerate(joints_per_frame):
            joints = joints[np.all(np.isfinite(joints), axis=1)] if len(joints) else joints
            if not len(joints):
                continue
            cam = joints @ rotation.T
            lo, hi = cam.min(axis=0), cam.max(axis=0)
            centres[f] = ((lo + hi) / 2) @ rotation  # back to world
            spans[f] = max(MIN_VIEW_M, (hi[0] - lo[0]) / FILL, (hi[1] - lo[1]) / FILL)
            known[f] = True
        if not known.any():
            return cls(np.tile([0.0, 0.9, 0.0], (count, 1)), np.full(count, 2.0))
        idx = np.flatnonzero(known)
        nearest = idx[np.clip(np.searchsorted(idx, np.arange(count)), 0, len(idx) - 1)]
        before = idx[np.clip(np.searchsorted(idx, np.arange(count)) - 1, 0, len(idx) - 1)]
        nearest = np.where(np.abs(before - np.arange(count)) < np.abs(nearest - np.arange(count)), before, nearest)
        centres, spans = centres[nearest], spans[nearest]
        sigma = smooth_s * (fps if fps > 0 else 30.0)
        return cls(_gaussian_smooth(centres, sigma), np.maximum(_gaussian_smooth(spans, sigma), MIN_VIEW_M))


class View3D:
    """The 3D panel: an orthographic camera placed per frame by a :class:`Framing`.

    ``size`` panel side in pixels; ``grid_m`` floor cell size in metres (fixed for the whole video so
    cells do not change under the viewer's eyes).
    """

    def __init__(self, size: int, framing: Framing, azimuth_deg: float = 35.0, elevation_deg: float = 18.0,
                 grid_m: float = 0.5, fps: float = 30.0):
        self.size = size
        self.framing = framing
        self.rotation = view_rotation(azimuth_deg, elevation_deg)
        self.grid_m = grid_m
        self.trail_frames = max(1, int(round(TRAIL_S * (fps if fps > 0 else 30.0))))
        self.thickness = max(2, size // 240)
        self._corner = self._draw_static()

    @classmethod
    def following(cls, size: int, joints_per_frame: list[np.ndarray], fps: float, **kwargs) -> "View3D":
        """A view that follows ``joints_per_frame`` (see :meth:`Framing.follow`); the grid cell is 0.5 m,
        or 1 m when the view ever spans more than 6 m."""
        rotation = view_rotation(kwargs.get("azimuth_deg", 35.0), kwargs.get("elevation_deg", 18.0))
        framing = Framing.follow(joints_per_frame, fps, rotation)
        grid = 0.5 if framing.spans.max() <= 6.0 else 1.0
        return cls(size, framing, grid_m=grid, fps=fps, **kwargs)

    def project(self, points: np.ndarray, frame: int) -> np.ndarray:
        """World points [..., 3] (metres) -> panel pixels [..., 2] (float) at ``frame``."""
        centre, span = self.framing.centres[frame], self.framing.spans[frame]
        cam = (np.asarray(points, np.float64) - centre) @ self.rotation.T
        scale = self.size / span
        return np.stack([self.size / 2 + cam[..., 0] * scale, self.size * 0.53 - cam[..., 1] * scale], axis=-1)

    def _draw_static(self) -> np.ndarray:
        """The background with the axes gizmo (lower-left) and the title; the grid moves, so it is not here."""
        panel = np.full((self.size, self.size, 3), BACKGROUND, np.uint8)
        origin = np.array([0.09 * self.size, 0.91 * self.size])
        length = 0.06 * self.size
        for axis, colour, label in ((0, (60, 60, 230), "x"), (1, (60, 200, 60), "y"), (2, (230, 120, 60), "z")):
            d = self.rotation[:, axis]  # the world axis in camera coordinates
            tip = origin + length * np.array([d[0], -d[1]])
            cv2.arrowedLine(panel, _pt(origin), _pt(tip), colour, 2, cv2.LINE_AA, shift=4, tipLength=0.25)
            cv2.putText(panel, label, (int(tip[0]) + 3, int(tip[1]) + 4), cv2.FONT_HERSHEY_SIMPLEX,
                        0.4, colour, 1, cv2.LINE_AA)
        cv2.putText(panel, f"3D world (m), grid {self.grid_m:g} m", (10, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (200, 200, 200), 1, cv2.LINE_AA)
        return panel

    def floor_bounds(self, frame: int) -> tuple[float, float, float, float]:
        """(x min, x max, z min, z max) in metres of the floor the panel shows at ``frame``: where the
        viewing rays through the panel's corners meet the plane y = 0, at most :data:`FLOOR_REACH` spans
        from the panel's centre (rays near the horizon meet the floor very far away)."""
        centre, span = self.framing.centres[frame], self.framing.spans[frame]
        half = span / 2
        top = span * 0.53   # the panel's centre sits 53 % down (see project)
        corners = []
        for u in (-half, half):
            for v in (top, top - span):
                # world = centre + R^T (u, v, t): choose t so that world y = 0
                along = self.rotation[2, 1]
                t = -(centre[1] + self.rotation[0, 1] * u + self.rotation[1, 1] * v) / along if along else 0.0
                t = float(np.clip(t, -FLOOR_REACH * span, FLOOR_REACH * span))
                corners.append(centre + self.rotation.T @ np.array([u, v, t]))
        corners = np.array(corners)
        return corners[:, 0].min(), corners[:, 0].max(), corners[:, 2].min(), corners[:, 2].max()

    def _draw_grid(self, panel: np.ndarray, frame: int) -> None:
        """The floor grid's lines at ``frame``, projected together and drawn in one call (the same pixels
        as one ``cv2.line`` per grid line)."""
        g = self.grid_m
        lo_x, hi_x, lo_z, hi_z = self.floor_bounds(frame)
        x0, x1 = math.floor(lo_x / g) * g, math.ceil(hi_x / g) * g
        z0, z1 = math.floor(lo_z / g) * g, math.ceil(hi_z / g) * g
        xs, zs = np.arange(x0, x1 + g / 2, g), np.arange(z0, z1 + g / 2, g)
        ends = np.concatenate([
            np.stack([np.stack([xs, np.zeros_like(xs), np.full_like(xs, z0)], -1),
                      np.stack([xs, np.zeros_like(xs), np.full_like(xs, z1)], -1)], 1),
            np.stack([np.stack([np.full_like(zs, x0), np.zeros_like(zs), zs], -1),
                      np.stack([np.full_like(zs, x1), np.zeros_like(zs), zs], -1)], 1)])
        cv2.polylines(panel, list(_fixed_point(self.project(ends, frame))), False, GRID, 1, cv2.LINE_AA, shift=4)

    def render(self, frame: int, skeletons: list[tuple[int, np.ndarray]],
               trails: dict[int, np.ndarray] | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """The panel ``[size, size, 3]`` at ``frame``: each (track_id, world [17, 3]) skeleton, and each
        track's pelvis trail ``trails[track_id]`` [n, 3] (oldest first, ending at this frame). Drawn into
        ``out`` (a ``[size, size, 3]`` uint8 array or view, overwritten) when given, else into a new array."""
        if out is None:
            panel = self._corner.copy()
        else:
            panel = out
            panel[...] = self._corner
        self._draw_grid(panel, frame)
        t = self.thickness
        live = [(tid, j) for tid, j in skeletons if j is not None and np.all(np.isfinite(j))]
        for tid, joints in live:  # shadows on the floor first
            shadow = joints.copy()
            shadow[:, 1] = 0.0
            ps = self.project(shadow, frame)
            for a, b in H36M17.bones:
                cv2.line(panel, _pt(ps[a]), _pt(ps[b]), SHADOW, t, cv2.LINE_AA, shift=4)
        for tid, path in (trails or {}).items():
            path = path[np.all(np.isfinite(path), axis=1)]
            if len(path) < 2:
                continue
            pts = self.project(path, frame)
            base = track_colour(tid)
            for i in range(1, len(pts)):  # older segments fade into the background
                colour = _mix(base, BACKGROUND, 0.85 * (1 - i / (len(pts) - 1)))
                cv2.line(panel, _pt(pts[i - 1]), _pt(pts[i]), colour, t, cv2.LINE_AA, shift=4)
        depth = [float((j[_PELVIS] @ self.rotation.T)[2]) for _, j in live]
        for _, (tid, joints) in sorted(zip(depth, live), key=lambda x: x[0]):  # far people first
            colours = _side_colours(track_colour(tid))
            p2 = self.project(joints, frame)
            for bone in H36M17.bones:
                cv2.line(panel, _pt(p2[bone[0]]), _pt(p2[bone[1]]), _bone_colour(H36M17, bone, colours),
                         t, cv2.LINE_AA, shift=4)
            for p in p2:
                cv2.circle(panel, _pt(p), t * 16, (255, 255, 255), -1, cv2.LINE_AA, shift=4)
            head = p2[_HEAD]
            cv2.putText(panel, f"#{tid}", (int(head[0]) - 10, int(head[1]) - 10), cv2.FONT_HERSHEY_SIMPLEX,
                        0.45, track_colour(tid), 1, cv2.LINE_AA)
        return panel


def _fixed_point(points: np.ndarray) -> np.ndarray:
    """Pixel positions [..., 2] as OpenCV's fixed-point (4 fractional bits) int32, rounded as :func:`_pt`."""
    return np.floor(points * 16 + 0.5).astype(np.int32)


def _pt(p: np.ndarray) -> tuple[int, int]:
    """A pixel position as OpenCV's fixed-point (4 fractional bits) integer pair."""
    return math.floor(p[0] * 16 + 0.5), math.floor(p[1] * 16 + 0.5)
