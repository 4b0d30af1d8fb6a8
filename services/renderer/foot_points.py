"""Heel and toe in the world frame from BlazePose's 2D foot landmarks and the lifted 3D ankle.

The 3D skeleton (Human3.6M-17) ends at the ankles; BlazePose's 33 landmarks also give the heel and the toe
(foot index) in the image. One view cannot give their depth, so one of two assumptions fills it in,
whichever the view suits (the angle between the camera ray through the ankle and the leg's sagittal plane,
whose normal is the person's medio-lateral axis, left hip -> right hip, decides):

* seen from the side (the sagittal plane turned at most :data:`MAX_PLANE_TURN_DEG` from facing the camera):
  heel and toe lie in the sagittal plane through the 3D ankle; each pixel's camera ray is intersected with
  it. Exact for a foot in that plane (a foot toeing out is read as its projection onto it).
* seen from the front or back (the plane turned further: a pixel's error would grow without bound along
  it): the heel is put at the ankle's depth (the plane through the ankle facing the camera) and the toe on
  its ray at the foot's length from the heel, on the anterior side. The foot's length is not measured but
  taken as :data:`FOOT_TO_SHANK` times the lifted knee -> ankle length; a length 10 % off moves a
  flat foot's angle by about 2.5 degrees and a foot pointed 25 degrees by about 7 (synthetic views).

In both cases the points are found relative to the BlazePose ankle's own ray and then moved onto the lifted
3D ankle, so a small misplacement of the person (the lifter's root fit, foot pinning) does not tilt the
foot. A plane facing the camera for the whole foot (the ankle's depth) was tried first: with the camera
looking down at the feet it tilted a side-view foot by up to 12 degrees (person 1.5 m off the optical axis
at 3 m) and gives nonsense for a foot pointing at the camera.

Camera (as the lifter estimates it, ``services/lifter3d/camera.py`` and ``world.py``): pinhole, principal
point at the centre of the ``width`` x ``height`` frame the 2D refers to, focal length in its pixels, per
frame; camera frame x right, y down, z forwards. World frame: metres, y up, floor y = 0, camera centre at
``(0, height_m, 0)``, world x = the first frame's camera x laid onto the floor, z towards the camera's side.
The lifter gives every frame's camera -> world rotation (roll included, and the camera's turns when it pans)
and focal length (``CameraEstimate.rotations`` / ``focal_per_frame``), and those are used. For a stored result
without them (a lifter that reported only the pitch) the rotation is recovered from the lifted tracks
themselves (:func:`rotation_from_tracks`: their world joints against their 2D keypoints' rays); in the
``hpe3d run tests/data/two_people_office_24f.mp4`` job that took the median reprojection error of the ankles
from 35.6 px (pitch alone) to 5.3 px.
"""
from __future__ import annotations

import numpy as np

from services.common.skeletons import BLAZEPOSE33

#: BlazePose visibility from which a foot landmark counts as seen (as the lifter's ankle threshold)
FOOT_MIN_SCORE = 0.3
#: the sagittal plane may turn this far from facing the camera (angle between its normal and the camera ray
#: through the ankle, folded to 0..90) before the foot-length placement takes over
MAX_PLANE_TURN_DEG = 60.0
#: heel -> toe length over knee -> ankle length: Winter's segment proportions of body height H (foot length
#: 0.152 H; knee to ankle 0.285 H - 0.039 H = 0.246 H)
FOOT_TO_SHANK = 0.152 / 0.246
#: BlazePose landmark indices per side: (ankle, heel, toe = foot index)
FOOT_LANDMARKS = {side: tuple(BLAZEPOSE33.index(f"{side}_{name}") for name in ("ankle", "heel", "foot_index"))
                  for side in ("left", "right")}


def camera_rotation(pitch_deg: float) -> np.ndarray:
    """Rotation ``[3, 3]`` mapping camera-frame vectors to world vectors (rows: world x, y, z in camera
    coordinates) for a camera looking ``pitch_deg`` degrees below the horizon with no roll."""
    p = np.radians(pitch_deg)
    return np.array([[1.0, 0.0, 0.0],
                     [0.0, -np.cos(p), -np.sin(p)],
                     [0.0, np.sin(p), -np.cos(p)]])


def rotation_from_tracks(world: np.ndarray, pixels: np.ndarray, focal_px: float, height_m: float,
                         width: float, height: float) -> np.ndarray:
    """Camera -> world rotation ``[3, 3]`` (as :func:`camera_rotation`) that best turns the camera rays
    through ``pixels [M, 2]`` onto the directions from the camera centre ``(0, height_m, 0)`` to the same
    points' world positions ``world [M, 3]`` (least squares over unit vectors: Wahba's problem, solved by
    SVD). Needs at least two points in different directions; rows with NaN are ignored."""
    ok = np.isfinite(world).all(axis=-1) & np.isfinite(pixels).all(axis=-1)
    to_point = np.asarray(world, np.float64)[ok] - [0.0, height_m, 0.0]
    rays = pixel_rays(np.asarray(pixels, np.float64)[ok], focal_px, width, height, np.eye(3))
    if len(to_point) < 2:
        raise ValueError("the camera's rotation needs at least two lifted joints seen in 2D")
    u = to_point / np.linalg.norm(to_point, axis=-1, keepdims=True)
    v = rays / np.linalg.norm(rays, axis=-1, keepdims=True)
    left, _, right = np.linalg.svd(u.T @ v)
    return left @ np.diag([1.0, 1.0, np.linalg.det(left @ right)]) @ right


def pixel_rays(pixels: np.ndarray, focal_px: float | np.ndarray, width: float, height: float,
               rotation: np.ndarray) -> np.ndarray:
    """World directions ``[..., 3]`` (not normalised; camera-frame z component 1) of the camera rays through
    ``pixels [..., 2]`` (origin at the top-left corner, principal point at the frame centre). One camera
    (``focal_px`` a number, ``rotation [3, 3]``), or one per row of ``pixels [N, K, 2]`` (``focal_px [N]``,
    ``rotation [N, 3, 3]``)."""
    uv = np.asarray(pixels, np.float64)
    rotation = np.asarray(rotation, np.float64)
    focal = np.asarray(focal_px, np.float64)
    if focal.ndim:
        focal = focal.reshape(focal.shape + (1,) * (uv.ndim - 1 - focal.ndim))
    cam = np.stack([(uv[..., 0] - width / 2) / focal, (uv[..., 1] - height / 2) / focal,
                    np.ones(uv.shape[:-1])], axis=-1)
    if rotation.ndim == 2:
        return cam @ rotation.T
    return np.einsum("nij,nkj->nki", rotation, cam.reshape(len(rotation), -1, 3)).reshape(cam.shape)


def on_plane(anchor: np.ndarray, normal: np.ndarray, centre: np.ndarray, rays: np.ndarray) -> np.ndarray:
    """Where the rays ``[N, K, 3]`` from ``centre [3]`` meet the planes through ``anchor [N, 3]`` with unit
    ``normal [N, 3]``: ``[N, K, 3]``; NaN for a ray (almost) parallel to its plane or meeting it behind the
    camera."""
    along = np.sum((anchor - centre) * normal, axis=-1)[:, None]                # [N, 1]
    across = np.sum(rays * normal[:, None, :], axis=-1)                         # [N, K]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(np.abs(across) > 1e-9, along / across, np.nan)
    t = np.where(t > 0, t, np.nan)
    return centre + t[..., None] * rays


def at_distance(origin: np.ndarray, rays: np.ndarray, centre: np.ndarray, distance: np.ndarray,
                forwards: np.ndarray) -> np.ndarray:
    """Points ``[N, 3]`` on the lines ``origin + t rays`` (``[N, 3]`` each) at ``distance [N]`` from
    ``centre [N, 3]``: of the two, the one further along ``forwards [N, 3]``; where the line passes
    further away than ``distance``, its point closest to ``centre``."""
    d = rays / np.linalg.norm(rays, axis=-1, keepdims=True)
    w = origin - centre
    b = np.sum(w * d, axis=-1)
    spread = np.sqrt(np.maximum(b * b - np.sum(w * w, axis=-1) + distance ** 2, 0.0))
    near, far = origin + (-b - spread)[:, None] * d, origin + (-b + spread)[:, None] * d
    ahead = np.sum((far - near) * forwards, axis=-1) > 0
    return np.where(ahead[:, None], far, near)


def foot_length(knees: np.ndarray, ankles: np.ndarray) -> np.ndarray:
    """Heel -> toe length ``[N]`` in metres from knees and ankles ``[N, 2, 3]`` (left, right): the mean
    knee -> ankle length of the two legs times :data:`FOOT_TO_SHANK` (NaN where a leg is missing)."""
    return FOOT_TO_SHANK * np.linalg.norm(np.asarray(knees, np.float64) - ankles, axis=-1).mean(axis=-1)


def feet_in_world(ankles_world: np.ndarray, medio_lateral: np.ndarray, foot_lengths: np.ndarray,
                  landmarks: np.ndarray, focal_px: float, rotation: np.ndarray, height_m: float, width: float,
                  height: float, min_score: float = FOOT_MIN_SCORE) -> tuple[np.ndarray, np.ndarray]:
    """Heel and toe of both feet in the world frame (see the module doc for the two placements).

    Args:
        ankles_world: ``[N, 2, 3]`` lifted 3D ankles (left, right), world metres.
        medio_lateral: ``[N, 3]`` each person's left hip -> right hip direction, world (any length): the
            normal of the sagittal plane; with the world's up it also gives the person's forwards.
        foot_lengths: ``[N]`` heel -> toe length in metres (:func:`foot_length`), used for a person seen
            from the front or back.
        landmarks: ``[N, 33, 3]`` BlazePose landmarks (x px, y px, visibility 0..1) of the same persons and
            frames; NaN rows where a person has none.
        focal_px, height_m: the video's camera (``Poses3D.camera``); ``focal_px`` a number, or ``[N]`` the
            focal length of each row's frame.
        rotation: camera -> world rotation ``[3, 3]``, or ``[N, 3, 3]`` that of each row's frame (the lifter's
            ``CameraEstimate.rotations``; :func:`rotation_from_tracks` or, without roll, :func:`camera_rotation`
            of the camera's pitch for a result without them).
        width, height: size in pixels of the frame the 2D refers to.
        min_score: visibility from which the BlazePose ankle, heel and toe count as seen (and only inside
            the frame: BlazePose guesses landmarks beyond its edges with a high visibility).

    Returns:
        ``(feet [N, 2, 2, 3], scores [N, 2])``: per side (left, right) the heel and the toe in world metres,
        NaN where the foot was not seen (any of its three landmarks below ``min_score`` or outside the
        frame); the lowest
        visibility of the three landmarks (0 where not seen).
    """
    ankles = np.asarray(ankles_world, np.float64).reshape(-1, 2, 3)
    lm = np.asarray(landmarks, np.float64).reshape(-1, 33, 3)
    focal = np.broadcast_to(np.asarray(focal_px, np.float64), (len(ankles),))
    if (focal <= 0).any() or width <= 0 or height <= 0:
        raise ValueError(f"camera needs a positive focal length and frame size, got f={np.min(focal, initial=0)}, "
                         f"{width}x{height}")
    rotation = np.asarray(rotation, np.float64)
    rotation = np.broadcast_to(rotation, (len(ankles), 3, 3))
    centre = np.array([0.0, height_m, 0.0])
    normal = np.asarray(medio_lateral, np.float64).reshape(-1, 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        normal = normal / np.linalg.norm(normal, axis=-1, keepdims=True)
    forwards = np.cross([0.0, 1.0, 0.0], normal)   # ISB: X = Y x Z with Y up and Z the person's right
    lengths = np.broadcast_to(np.asarray(foot_lengths, np.float64), (len(ankles),))
    feet = np.full((len(ankles), 2, 2, 3), np.nan)
    scores = np.zeros((len(ankles), 2))
    for k, side in enumerate(("left", "right")):
        points = lm[:, list(FOOT_LANDMARKS[side])]                              # [N, 3 (ankle, heel, toe), 3]
        score = np.min(points[..., 2], axis=1)
        view = ankles[:, k] - centre
        with np.errstate(divide="ignore", invalid="ignore"):
            facing = np.abs(np.sum(view * normal, axis=-1)) / np.linalg.norm(view, axis=-1)
        with np.errstate(invalid="ignore"):
            inside = ((points[..., 0] >= 0) & (points[..., 0] <= width) & (points[..., 1] >= 0)
                      & (points[..., 1] <= height)).all(axis=1)
        seen = (np.isfinite(points).all(axis=(1, 2)) & (score >= min_score) & np.isfinite(ankles[:, k]).all(-1)
                & np.isfinite(normal).all(-1) & inside)
        side_view = seen & (facing >= np.cos(np.radians(MAX_PLANE_TURN_DEG)))
        if side_view.any():
            rays = pixel_rays(points[side_view, :, :2], focal[side_view], width, height, rotation[side_view])
            placed = on_plane(ankles[side_view, k], normal[side_view], centre, rays)  # [n, 3 (ankle, heel, toe), 3]
            feet[side_view, k] = ankles[side_view, k][:, None] + placed[:, 1:] - placed[:, :1]
        front_view = seen & ~side_view & np.isfinite(lengths) & (lengths > 0)
        if front_view.any():
            a = ankles[front_view, k]
            rays = pixel_rays(points[front_view, :, :2], focal[front_view], width, height, rotation[front_view])
            view_dir = (a - centre) / np.linalg.norm(a - centre, axis=-1, keepdims=True)
            placed = on_plane(a, view_dir, centre, rays[:, :2])                  # BlazePose ankle, heel
            shift = a - placed[:, 0]                                             # onto the lifted ankle
            heel = placed[:, 1] + shift
            toe = at_distance(centre + shift, rays[:, 2], heel, lengths[front_view], forwards[front_view])
            feet[front_view, k] = np.stack([heel, toe], axis=1)
        scores[seen, k] = np.clip(score[seen], 0.0, 1.0)
    ok = np.isfinite(feet).all(axis=(2, 3))
    feet[~ok] = np.nan
    scores[~ok] = 0.0
    return feet, scores
