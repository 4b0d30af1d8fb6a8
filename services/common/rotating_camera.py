"""A camera that only turns and zooms: the homography between two of its frames, and back.

A camera that turns about its centre (pan, tilt, roll) and changes its focal length (zoom), but does not
move, sees the scene from frame ``r`` to frame ``t`` through one homography of the pixels, whatever the
depth of what it looks at::

    x_t ~ H x_r,    H = K(f_t) R K(f_r)^-1,    K(f) = [[f, 0, w/2], [0, f, h/2], [0, 0, 1]]

``R`` maps camera-frame vectors of frame ``r`` to those of frame ``t`` (camera frame x right, y down,
z forward; pixels from the top-left corner, principal point at the centre, as in
:mod:`services.lifter3d.camera`). :func:`rotation_zoom_from_homography` recovers ``R`` and the zoom
``f_t / f_r`` from a fitted homography and the focal length ``f_r``; how far the best such model stays
from the homography (pixels) says whether the camera did more than turn and zoom.

Numpy only: the lifter's image has no OpenCV.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Points (a 5 x 5 grid over the frame, 5 % in from its edges) on which a homography and its
#: turn-and-zoom model are compared.
_GRID = np.stack(np.meshgrid(np.linspace(0.05, 0.95, 5), np.linspace(0.05, 0.95, 5)), axis=-1).reshape(-1, 2)


def intrinsics(focal: float, width: float, height: float) -> np.ndarray:
    """``[3, 3]`` pinhole matrix, principal point at the centre of a ``width`` x ``height`` frame."""
    return np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])


def rotation_homography(rotation: np.ndarray, focal_from: float, focal_to: float, width: float,
                        height: float) -> np.ndarray:
    """``H = K(focal_to) R K(focal_from)^-1``: pixels of a frame to those of a frame taken after the
    camera turned by ``rotation`` (camera vectors before -> after) and changed its focal length."""
    return intrinsics(focal_to, width, height) @ np.asarray(rotation, np.float64) @ np.linalg.inv(
        intrinsics(focal_from, width, height))


def apply_homography(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Pixels ``[N, 2]`` mapped by ``homography``."""
    p = np.asarray(points, np.float64) @ np.asarray(homography, np.float64)[:, :2].T + homography[:, 2]
    return p[:, :2] / p[:, 2:]


def rotation_from_vector(vector: np.ndarray) -> np.ndarray:
    """Rotation matrix of a rotation vector (axis times angle in radians; Rodrigues' formula)."""
    v = np.asarray(vector, np.float64)
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.eye(3)
    k = v / angle
    cross = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def vector_from_rotation(rotation: np.ndarray) -> np.ndarray:
    """Rotation vector (axis times angle in radians) of a rotation matrix: the inverse of
    :func:`rotation_from_vector` for angles below 180 degrees."""
    r = np.asarray(rotation, np.float64)
    angle = np.arccos(np.clip((np.trace(r) - 1) / 2, -1.0, 1.0))
    axis = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    if angle < 1e-6:
        return axis / 2   # sin(angle) ~ angle
    return axis * angle / (2 * np.sin(angle))


def rotation_angle_deg(rotation: np.ndarray) -> float:
    """Angle of a rotation matrix, degrees (0..180)."""
    return float(np.degrees(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1.0, 1.0))))


def nearest_rotation(matrix: np.ndarray) -> np.ndarray:
    """The rotation matrix closest to ``matrix`` (Frobenius norm; SVD with the determinant kept +1)."""
    u, _, vt = np.linalg.svd(matrix)
    return u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt


def quaternion_from_rotation(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternion ``(w, x, y, z)``, ``w >= 0``, of rotation matrices ``[..., 3, 3]`` (each from the
    formula led by its largest component, so angles near 180 degrees are exact too)."""
    r = np.asarray(rotation, np.float64)
    r00, r01, r02 = r[..., 0, 0], r[..., 0, 1], r[..., 0, 2]
    r10, r11, r12 = r[..., 1, 0], r[..., 1, 1], r[..., 1, 2]
    r20, r21, r22 = r[..., 2, 0], r[..., 2, 1], r[..., 2, 2]
    squares = np.stack([1 + r00 + r11 + r22, 1 + r00 - r11 - r22, 1 - r00 + r11 - r22, 1 - r00 - r11 + r22], -1)
    lead = np.argmax(squares, axis=-1)[..., None]
    big = np.sqrt(np.maximum(np.take_along_axis(squares, lead, -1)[..., 0], 1e-12)) / 2
    four = 4 * big
    candidates = np.stack([
        np.stack([big, (r21 - r12) / four, (r02 - r20) / four, (r10 - r01) / four], -1),
        np.stack([(r21 - r12) / four, big, (r01 + r10) / four, (r02 + r20) / four], -1),
        np.stack([(r02 - r20) / four, (r01 + r10) / four, big, (r12 + r21) / four], -1),
        np.stack([(r10 - r01) / four, (r02 + r20) / four, (r12 + r21) / four, big], -1)], -2)
    q = np.take_along_axis(candidates, lead[..., None], -2)[..., 0, :]
    q = np.where(q[..., :1] < 0, -q, q)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def rotation_from_quaternion(quaternion: np.ndarray) -> np.ndarray:
    """Rotation matrices ``[..., 3, 3]`` of quaternions ``(w, x, y, z)`` ``[..., 4]`` (normalised first)."""
    q = np.asarray(quaternion, np.float64)
    w, x, y, z = np.moveaxis(q / np.linalg.norm(q, axis=-1, keepdims=True), -1, 0)
    return np.stack([np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
                     np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
                     np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)], -2)


@dataclass(frozen=True)
class TurnAndZoom:
    """How the camera turned and zoomed between two frames.

    ``rotation``: camera vectors of the earlier frame -> the later; ``zoom``: later focal length over the
    earlier; ``residual_px``: RMS distance, over a grid on the frame, between where the fitted homography
    and this model put the pixels (large: the camera moved, or the homography is poor)."""

    rotation: np.ndarray
    zoom: float
    residual_px: float


def _turn_homography(rotation: np.ndarray, focal_from: float, focal_to: float, width: float,
                     height: float) -> np.ndarray:
    """:func:`rotation_homography` written out (no matrix inverse: it runs in the inner loop of the fit)."""
    cx, cy = width / 2, height / 2
    k_inv = np.array([[1 / focal_from, 0.0, -cx / focal_from], [0.0, 1 / focal_from, -cy / focal_from],
                      [0.0, 0.0, 1.0]])
    k = np.array([[focal_to, 0.0, cx], [0.0, focal_to, cy], [0.0, 0.0, 1.0]])
    return k @ rotation @ k_inv


def _model_residuals(params: np.ndarray, base: np.ndarray, focal: float, width: float, height: float,
                     points: np.ndarray, targets: np.ndarray) -> np.ndarray:
    rotation = rotation_from_vector(params[:3]) @ base
    h = _turn_homography(rotation, focal, focal * np.exp(params[3]), width, height)
    return (apply_homography(h, points) - targets).ravel()


def rotation_zoom_from_homography(homography: np.ndarray, focal: float, width: float, height: float,
                                  region: tuple[float, float, float, float] | None = None,
                                  iterations: int = 3) -> TurnAndZoom:
    """The turn and zoom whose homography (:func:`rotation_homography` from focal length ``focal``) is
    closest to ``homography`` on a grid of points over ``region`` (x0, y0, x1, y1 pixels: where the
    homography was measured, so its poorly known extrapolation does not count; None: the whole
    ``width`` x ``height`` frame).

    Closed form first (``K^-1 H K`` is ``diag(zoom, zoom, 1) R`` up to scale: the rows' norms give the
    zoom, the nearest rotation the turn), then a few Gauss-Newton steps on the grid's pixel distances
    over the rotation vector and the log zoom."""
    h = np.asarray(homography, np.float64)
    k = intrinsics(focal, width, height)
    m = np.linalg.inv(k) @ h @ k
    scale = np.linalg.norm(m[2])
    m = m / scale * np.sign(np.linalg.det(m))
    zoom = max(1e-3, (np.linalg.norm(m[0]) + np.linalg.norm(m[1])) / 2)
    base = nearest_rotation(np.diag([1 / zoom, 1 / zoom, 1.0]) @ m)
    x0, y0, x1, y1 = region if region is not None else (0.0, 0.0, width, height)
    points = _GRID * [x1 - x0, y1 - y0] + [x0, y0]
    targets = apply_homography(h, points)
    params = np.array([0.0, 0.0, 0.0, np.log(zoom)])
    step = 1e-6
    for _ in range(iterations):
        r = _model_residuals(params, base, focal, width, height, points, targets)
        jac = np.stack([(_model_residuals(params + step * e, base, focal, width, height, points, targets) - r) / step
                        for e in np.eye(4)], axis=1)
        delta = np.linalg.lstsq(jac, -r, rcond=None)[0]
        params = params + delta
        if np.abs(delta).max() < 1e-9:
            break
    r = _model_residuals(params, base, focal, width, height, points, targets).reshape(-1, 2)
    rotation = nearest_rotation(rotation_from_vector(params[:3]) @ base)
    return TurnAndZoom(rotation, float(np.exp(params[3])), float(np.sqrt(np.mean(np.sum(r * r, axis=1)))))
