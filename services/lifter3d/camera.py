"""The video's pinhole camera: focal-length prior and each person's root translation from 2D + lifted 3D.

Conventions: camera frame x right, y down, z forward (away from the camera), metres; pixels with the origin
at the top-left corner; principal point at the image centre; no lens distortion; a camera that
stands still or turns and zooms about its centre (:mod:`services.lifter3d.camera_path`).
"""
from __future__ import annotations

import numpy as np

#: Field of view assumed when the caller gives no focal length: 57.5 degrees across the longer image side,
#: the middle of the 55-60 degree range of typical phone and action cameras at their main (1x) lens.
PRIOR_FOV_DEG = 57.5


def focal_prior(width: float, height: float, fov_deg: float = PRIOR_FOV_DEG) -> float:
    """Focal length in pixels for an image of ``width`` x ``height`` pixels whose longer side spans
    ``fov_deg`` degrees (a phone filming upright keeps its sensor's field of view along the long side)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    return float(max(width, height) / 2 / np.tan(np.deg2rad(fov_deg) / 2))


def fit_root_translation(root_relative: np.ndarray, pixels: np.ndarray, weights: np.ndarray,
                         focal: float | np.ndarray,
                         width: float, height: float, iterations: int = 3,
                         min_depth: float = 0.3) -> np.ndarray:
    """Per-frame translation that puts a root-relative 3D pose where its 2D keypoints are seen.

    Solves, for every frame, the weighted linear least squares of the perspective projection
    ``u = f (X + tx) / (Z + tz) + cx`` (and the same for v) over the joints, rearranged to be linear in
    ``T = (tx, ty, tz)``: ``f tx - (u - cx) tz = (u - cx) Z - f X``. Each row is weighted by the joint's
    weight and by ``1 / depth`` of the previous iterate, so the solution approaches the reprojection-error
    minimum. The metric size of the lifted skeleton against its size in pixels fixes the depth.

    Args:
        root_relative: ``[F, J, 3]`` camera-frame joints relative to the root (pelvis), metres.
        pixels: ``[F, J, 2]`` the same joints' image positions, pixels.
        weights: ``[F, J]`` confidence of each 2D joint (0 = ignore).
        focal: focal length in pixels, one for all frames or ``[F]`` one per frame (a zooming camera).
        width, height: image size in pixels (principal point at the centre).
        iterations: reweighting rounds.
        min_depth: the root is kept at least this far in front of the camera, metres.

    Returns:
        ``[F, 3]`` camera-frame position of the root, metres.
    """
    rel = np.asarray(root_relative, dtype=np.float64)
    uv = np.asarray(pixels, dtype=np.float64) - np.array([width / 2, height / 2])
    w = np.clip(np.asarray(weights, dtype=np.float64), 0.0, None)
    frames, joints = rel.shape[:2]
    focal = np.broadcast_to(np.asarray(focal, dtype=np.float64), (frames,))[:, None]
    w = np.where(w.sum(axis=1, keepdims=True) > 0, w, 1.0)  # a frame with no confident joint uses them all
    # rows: [F, 2J, 3] coefficients and [F, 2J] right-hand sides
    a = np.zeros((frames, 2 * joints, 3))
    b = np.zeros((frames, 2 * joints))
    a[:, :joints, 0] = focal
    a[:, :joints, 2] = -uv[..., 0]
    b[:, :joints] = uv[..., 0] * rel[..., 2] - focal * rel[..., 0]
    a[:, joints:, 1] = focal
    a[:, joints:, 2] = -uv[..., 1]
    b[:, joints:] = uv[..., 1] * rel[..., 2] - focal * rel[..., 1]
    base = np.concatenate([w, w], axis=1)
    t = np.zeros((frames, 3))
    depth = np.ones((frames, joints))
    for _ in range(max(1, iterations)):
        row_w = base / np.concatenate([depth, depth], axis=1)
        aw = a * row_w[..., None]
        lhs = np.einsum("fri,frj->fij", aw, a) + 1e-9 * np.eye(3)
        rhs = np.einsum("fri,fr->fi", aw, b)
        t = np.linalg.solve(lhs, rhs[..., None])[..., 0]
        t[:, 2] = np.maximum(t[:, 2], min_depth)
        depth = np.maximum(rel[..., 2] + t[:, None, 2], min_depth)
    return t


def project(points: np.ndarray, focal: float, width: float, height: float) -> np.ndarray:
    """Camera-frame points ``[..., 3]`` (metres) -> pixels ``[..., 2]`` (principal point at the centre)."""
    p = np.asarray(points, dtype=np.float64)
    z = np.maximum(p[..., 2], 1e-6)
    return np.stack([focal * p[..., 0] / z + width / 2, focal * p[..., 1] / z + height / 2], axis=-1)
