"""Root motion: every person of a video in one world frame shared by all of them.

World frame (what ``Track3D.world`` holds): metres, y up, the floor is the plane y = 0, the origin is the
floor point straight below the camera, x is the first frame's camera right direction laid onto the floor, z
points from the scene towards the camera (right-handed). The frame is fixed to the scene: a camera that turns
and zooms (:class:`~services.lifter3d.camera_path.CameraPath`, from the decoder's camera motion) is undone
frame by frame, so a person standing still stays put while the camera pans. Planted ankles rest :data:`~services.lifter3d.contacts.ANKLE_HEIGHT_M`
above the floor.

Steps (:func:`place_in_world`):

1. focal length: the caller's, else :func:`~services.lifter3d.camera.focal_prior`; times each frame's zoom;
2. per person and frame, the pelvis position in the camera frame from the lifted root-relative skeleton and
   its 2D keypoints (:func:`~services.lifter3d.camera.fit_root_translation`), both turned into the first
   frame's camera axes (the camera path's rotation), then smoothed in time (:func:`smooth_trajectory`:
   running median, then gaussian, the depth along each frame's line of sight more);
3. the floor: its normal starts from the people's mean up direction (ankles to thorax, in the frames where the
   2D saw both ankles: the lifter's guess of feet outside the picture leans the body) and is refined by the
   plane through the seen ankles of slow, low feet of all persons (a person whose feet were never seen adds
   none) and by every person's pelvis path, whose height above the floor is taken as constant (each person at
   their own height; the pelvis is placed from the whole body's 2D, so it is there when the feet are outside
   the picture, and a camera that turns and zooms sees the same paths as a still one); a least-squares fit
   with a 5 degree prior towards the body's up, so feet and paths that lie on one line, e.g. a straight walk,
   cannot tip the floor sideways; the camera height follows from those ankles' heights;
4. camera -> world rotation and shift; foot contacts from ankle height and speed
   (:func:`~services.lifter3d.contacts.detect_contacts`; only for ankles seen in 2D: a foot outside the
   picture is never planted); the body is shifted so planted feet do not slide
   (:func:`~services.lifter3d.contacts.pin_planted_feet`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.common.skeletons import H36M17
from services.lifter3d.camera import fit_root_translation, focal_prior
from services.lifter3d.camera_path import CameraPath
from services.lifter3d.contacts import ANKLE_HEIGHT_M, FEET, detect_contacts, pin_planted_feet

DEFAULT_FPS = 30.0
#: Running-median window of the root trajectory, seconds (removes single-frame depth outliers).
MEDIAN_WINDOW_S = 0.3
#: Gaussian smoothing of the root trajectory, sigma in seconds: horizontal (x, y in the image) and depth.
SMOOTH_SIGMA_S = (0.1, 0.3)
#: Prior spread of the floor normal around the body's up direction, radians.
FLOOR_PRIOR_RAD = np.deg2rad(5.0)
#: Expected scatter of planted ankles around the floor plane, metres.
FLOOR_NOISE_M = 0.05
#: Expected scatter of a person's pelvis height above the floor along their path, metres (the gait's bob,
#: and the depth error along a line of sight that slopes down to the pelvis).
PELVIS_LEVEL_NOISE_M = 0.10
#: A person's pelvis path counts towards the floor from this many frames on.
MIN_LEVEL_FRAMES = 10
#: 2D score from which an ankle counts as seen (the threshold below which the lifter fills joints in) ...
SEEN_SCORE = 0.3
#: ... and the longest run of frames below it that still counts as seen, seconds (a short miss is filled in
#: from its neighbours reliably; a foot outside the picture or hidden for longer is guessed).
UNSEEN_RUN_S = 0.2
#: Frames (over all persons) in which both ankles were seen, from which only those give the body's up.
MIN_UP_FRAMES = 3
_THORAX = H36M17.index("thorax")


@dataclass
class TrackInput:
    """One person's lifted track: ``root_relative [F, 17, 3]`` camera-frame H36M-17 joints (x right,
    y down, z forward, metres, pelvis at the origin) and ``keypoints [F, 17, 3]`` the H36M-17 2D joints
    (pixels, score) the skeleton was lifted from, from video frame ``first_frame`` on."""

    root_relative: np.ndarray
    keypoints: np.ndarray
    first_frame: int = 0


@dataclass
class CameraPose:
    """The estimated camera. ``rotation`` maps the first frame's camera-frame vectors to world vectors (rows:
    world x, y, z in camera coordinates); the camera centre is at ``(0, height_m, 0)`` in the world;
    ``path`` how it turned and zoomed in every frame (None: it stood still)."""

    focal_px: float
    focal_from_prior: bool
    rotation: np.ndarray
    height_m: float
    path: CameraPath | None = None

    def frame_rotations(self, frame_count: int) -> np.ndarray:
        """``[F, 3, 3]`` camera -> world rotation of every frame."""
        if self.path is None:
            return np.tile(self.rotation, (frame_count, 1, 1))
        return self.rotation @ self.path.to_first[:frame_count]

    def frame_focals(self, frame_count: int) -> np.ndarray:
        """``[F]`` focal length in pixels of every frame."""
        return self.focal_px * (self.path.zoom[:frame_count] if self.path is not None else np.ones(frame_count))

    @property
    def pitch_deg(self) -> float:
        """Angle of the optical axis below the horizon, degrees (positive: looking down)."""
        return float(np.rad2deg(np.arcsin(np.clip(-self.rotation[1, 2], -1.0, 1.0))))

    def to_world(self, points: np.ndarray) -> np.ndarray:
        """Camera-frame points ``[..., 3]`` -> world points."""
        return np.asarray(points, dtype=np.float64) @ self.rotation.T + np.array([0.0, self.height_m, 0.0])


@dataclass
class PlacedTrack:
    """``world [F, 17, 3]`` metres in the shared world frame and ``contacts [F, 2]`` (left, right) booleans."""

    world: np.ndarray
    contacts: np.ndarray


def _pad(x: np.ndarray, width: int, steady: bool) -> np.ndarray:
    """Pad ``x [F, C]`` by ``width`` frames at both ends: with ``steady`` by point reflection about the end
    values (a steady motion goes on, so smoothing does not pull a moving person back at the ends), else by
    repeating them."""
    if steady and len(x) >= 2:
        return np.pad(x, ((width, width), (0, 0)), mode="reflect", reflect_type="odd")
    return np.pad(x, ((width, width), (0, 0)), mode="edge")


def _running_median(x: np.ndarray, window: int, steady: bool = False) -> np.ndarray:
    """Median over a centred window of ``window`` frames along axis 0 (ends padded as :func:`_pad`)."""
    if window < 2 or len(x) < 3:
        return x.copy()
    half = window // 2
    padded = _pad(x, half, steady)
    stacked = np.stack([padded[k:k + len(x)] for k in range(2 * half + 1)])
    return np.median(stacked, axis=0)


def _gaussian(x: np.ndarray, sigma: float, steady: bool = False) -> np.ndarray:
    """Gaussian smoothing of ``x [F, C]`` along axis 0, ``sigma`` in frames (ends padded as :func:`_pad`)."""
    if sigma <= 0 or len(x) < 2:
        return x.copy()
    radius = int(np.ceil(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    padded = _pad(x, radius, steady)
    return np.stack([np.convolve(padded[:, c], taps, mode="valid") for c in range(x.shape[1])], axis=1)


def smooth_trajectory(translation: np.ndarray, fps: float, sight: np.ndarray | None = None) -> np.ndarray:
    """Robust low-pass of a camera-frame root trajectory ``[F, 3]``: a running median over
    :data:`MEDIAN_WINDOW_S`, then gaussians of :data:`SMOOTH_SIGMA_S` (across the line of sight lightly;
    along it, the depth, the noisiest coordinate, more); the ends are padded by point reflection, so a
    person walking steadily is not pulled back there. ``sight [F, 3]``: each frame's unit line of sight in
    the trajectory's axes (a turning camera); None: z. Returns a new ``[F, 3]`` array."""
    t = _running_median(np.asarray(translation, dtype=np.float64), int(round(MEDIAN_WINDOW_S * fps)) | 1, True)
    lateral, depth = SMOOTH_SIGMA_S
    out = _gaussian(t, lateral * fps, True)
    if sight is None:
        out[:, 2] = _gaussian(t[:, 2:], depth * fps, True)[:, 0]
        return out
    along = np.sum((_gaussian(t, depth * fps, True) - out) * sight, axis=1, keepdims=True)
    return out + along * sight


def ankles_seen(keypoints: np.ndarray, fps: float) -> np.ndarray:
    """``[F, 2]`` (left, right): whether each ankle of H36M-17 2D ``keypoints [F, 17, 3]`` was seen -- its
    score is at least :data:`SEEN_SCORE`, or it is below only for a run of at most :data:`UNSEEN_RUN_S`."""
    low = np.asarray(keypoints)[:, list(FEET), 2] < SEEN_SCORE
    seen = np.ones(low.shape, dtype=bool)
    longest = max(1, int(round(UNSEEN_RUN_S * fps)))
    for k in range(2):
        edges = np.diff(np.concatenate([[0], low[:, k].astype(np.int8), [0]]))
        for start, stop in zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]):
            if stop - start > longest:
                seen[start:stop, k] = False
    return seen


def _unit(v: np.ndarray) -> np.ndarray:
    return v / (np.linalg.norm(v, axis=-1, keepdims=True) + 1e-12)


def body_up(root_relative: list[np.ndarray], seen: list[np.ndarray] | None = None) -> np.ndarray:
    """Mean up direction (camera frame, unit) of all persons: the median over frames of the unit vector from
    the ankles' midpoint to the thorax. With ``seen`` (``[F, 2]`` per person, :func:`ankles_seen`) only the
    frames in which the 2D saw both ankles count, when there are at least :data:`MIN_UP_FRAMES` of them (the
    lifter's guess of feet outside the picture leans the body by tens of degrees)."""
    vecs = np.concatenate([r[:, _THORAX] - r[:, list(FEET)].mean(axis=1) for r in root_relative])
    if seen is not None:
        both = np.concatenate([s.all(axis=1) for s in seen])
        if both.sum() >= MIN_UP_FRAMES:
            vecs = vecs[both]
    return _unit(np.median(_unit(vecs), axis=0))


def _ground_points(absolute: list[np.ndarray], seen: list[np.ndarray], up: np.ndarray,
                   fps: float) -> np.ndarray:
    """Ankles likely on the floor, camera frame ``[N, 3]``: per person, frame and foot the ankles that were
    seen in 2D (``seen`` ``[F, 2]`` per person), are within 5 cm of the lower ankle (along ``up``), within
    15 cm of that person's low ankles (20th percentile) and slow (under 0.5 m/s, or 0.8 times the pelvis's
    speed when the person runs). When fewer than three qualify over all persons (no foot seen standing),
    every frame's lower ankle of every person (the lifter's guess is then all there is)."""
    points, lowers = [], []
    for a, visible in zip(absolute, seen):
        ankles = a[:, list(FEET)]  # [F, 2, 3]
        heights = ankles @ up
        lowers.append(ankles[np.arange(len(a)), np.argmin(heights, axis=1)])
        if len(a) >= 3:
            speed = np.linalg.norm(np.gradient(ankles, axis=0), axis=-1) * fps  # [F, 2]
            body = np.linalg.norm(np.gradient(a[:, 0], axis=0), axis=-1) * fps
            body = _gaussian(body[:, None], 0.25 * fps)[:, 0]
            low = heights.min(axis=1)
            keep = ((heights < low[:, None] + 0.05) & (heights < np.percentile(low, 20) + 0.15)
                    & (speed < np.maximum(0.5, 0.8 * body)[:, None]) & visible)
            points.append(ankles[keep])
    points = np.concatenate(points) if points else np.zeros((0, 3))
    return points if len(points) >= 3 else np.concatenate(lowers)


def fit_floor_normal(points: np.ndarray, up: np.ndarray, iterations: int = 3,
                     level: list[np.ndarray] | None = None) -> np.ndarray:
    """Normal of the plane through ``points [N, 3]`` (camera frame), with a gaussian prior of
    :data:`FLOOR_PRIOR_RAD` around ``up``; the scatter of the points is taken as :data:`FLOOR_NOISE_M`.
    ``level``: paths ``[F, 3]`` (camera frame; a person's pelvis) that keep their own constant height above
    the plane, with a scatter of :data:`PELVIS_LEVEL_NOISE_M` (None or empty: none; the result is then that
    of the points alone).

    The normal is parametrised by two small tilts of ``up`` and solved by linearised least squares
    (a few rounds); points more than three noise levels off the plane, and path frames more than three
    noise levels off their path's median height, are dropped after the first round.
    """
    n = _unit(np.asarray(up, dtype=np.float64))
    paths = [np.asarray(q, dtype=np.float64) for q in (level or []) if len(q) >= 2]
    if len(points) < 3 and not paths:
        return n
    keep = np.ones(len(points), dtype=bool)
    for it in range(iterations):
        e1 = _unit(np.cross(n, [0.0, 0.0, 1.0]) if abs(n[2]) < 0.9 else np.cross(n, [1.0, 0.0, 0.0]))
        e2 = np.cross(n, e1)
        p = points[keep] if len(points) >= 3 else np.zeros((0, 3))
        # height of each point along the tilted normal n + a e1 + b e2 ~ p.n + a p.e1 + b p.e2 = c
        design = np.stack([p @ e1, p @ e2, -np.ones(len(p))], axis=1)
        target = -(p @ n)
        if paths:   # each path about its own mean height, weighted by its scatter against the points'
            centred = np.concatenate([q - q.mean(axis=0) for q in paths]) * (FLOOR_NOISE_M / PELVIS_LEVEL_NOISE_M)
            design = np.concatenate([design, np.stack([centred @ e1, centred @ e2, np.zeros(len(centred))], axis=1)])
            target = np.concatenate([target, -(centred @ n)])
        reg = np.diag([(FLOOR_NOISE_M / FLOOR_PRIOR_RAD) ** 2] * 2 + [0.0])
        # the prior pulls towards `up`: express it relative to the current n
        prior = np.array([(up - n) @ e1, (up - n) @ e2, 0.0])
        sol = np.linalg.solve(design.T @ design + reg + 1e-9 * np.eye(3), design.T @ target + reg @ prior)
        n = _unit(n + sol[0] * e1 + sol[1] * e2)
        if it == 0 and len(points) >= 3:
            resid = points @ n - np.median(points[keep] @ n)
            keep = np.abs(resid) < 3 * FLOOR_NOISE_M
            if keep.sum() < 3:
                keep[:] = True
        if it == 0 and paths:   # a crouch, a sit or a jump: frames whose pelvis is not at the path's height
            paths = [q[np.abs(q @ n - np.median(q @ n)) < 3 * PELVIS_LEVEL_NOISE_M] for q in paths]
            paths = [q for q in paths if len(q) >= 2]
    return n


def camera_from_floor(normal: np.ndarray, ground: np.ndarray, focal: float, from_prior: bool) -> CameraPose:
    """The camera pose from the floor normal (camera frame, pointing up) and ankles on the floor
    ``ground [N, 3]``: world y = normal, world x = camera x laid onto the floor, z = x cross y; the camera
    height is :data:`ANKLE_HEIGHT_M` minus the median ankle height relative to the camera."""
    y = _unit(normal)
    x = _unit(np.array([1.0, 0.0, 0.0]) - y[0] * y)
    z = np.cross(x, y)
    height = float(ANKLE_HEIGHT_M - np.median(ground @ y))
    return CameraPose(focal, from_prior, np.stack([x, y, z]), height)


def place_in_world(tracks: list[TrackInput], width: float, height: float, focal_px: float = 0.0,
                   fps: float = 0.0, pin_feet: bool = True, camera_path: CameraPath | None = None) -> tuple[CameraPose, list[PlacedTrack]]:
    """Put every track of one video into the shared world frame (see the module doc).

    Args:
        tracks: the video's lifted tracks (at least one).
        width, height: frame size the 2D refers to, pixels.
        focal_px: focal length in pixels; 0 or less uses the prior.
        fps: frame rate; 0 or less means :data:`DEFAULT_FPS`.
        pin_feet: shift bodies so planted feet do not slide.
        camera_path: how the camera turned and zoomed, per video frame (covering every track's frames);
            None: it stood still (the result is then exactly that of a path of identities).

    Returns:
        The camera estimate and one :class:`PlacedTrack` per input track, in order.
    """
    if not tracks:
        raise ValueError("no tracks to place")
    fps = fps if fps > 0 else DEFAULT_FPS
    from_prior = not focal_px or focal_px <= 0
    focal = focal_prior(width, height) if from_prior else float(focal_px)
    absolute, turned = [], []
    for track in tracks:
        rel = np.asarray(track.root_relative, dtype=np.float64)
        kp = np.asarray(track.keypoints, dtype=np.float64)
        if camera_path is None:
            t = fit_root_translation(rel, kp[..., :2], kp[..., 2], focal, width, height)
            absolute.append(rel + smooth_trajectory(t, fps)[:, None])
            turned.append(rel)
            continue
        frames = slice(track.first_frame, track.first_frame + len(rel))
        to_first, zoom = camera_path.to_first[frames], camera_path.zoom[frames]
        if len(zoom) != len(rel):
            raise ValueError(f"camera path covers frames up to {len(camera_path)}, a track reaches {frames.stop}")
        t = fit_root_translation(rel, kp[..., :2], kp[..., 2], focal * zoom, width, height)
        rel_first = np.einsum("fij,fkj->fki", to_first, rel)      # into the first frame's camera axes
        t_first = np.einsum("fij,fj->fi", to_first, t)
        absolute.append(rel_first + smooth_trajectory(t_first, fps, to_first[:, :, 2])[:, None])
        turned.append(rel_first)
    seen = [ankles_seen(t.keypoints, fps) for t in tracks]
    up = body_up(turned, seen)
    up = -up if up[1] > 0 else up  # camera y points down: the body's up has a negative y
    ground = _ground_points(absolute, seen, up, fps)
    normal = fit_floor_normal(ground, up, level=[a[:, 0] for a in absolute if len(a) >= MIN_LEVEL_FRAMES])
    camera = camera_from_floor(normal, ground, focal, from_prior)
    camera.path = camera_path
    placed = []
    for a, visible in zip(absolute, seen):
        world = camera.to_world(a)
        contacts = detect_contacts(world, fps, visible)
        if pin_feet:
            world = pin_planted_feet(world, contacts, fps)
        placed.append(PlacedTrack(world.astype(np.float32), contacts))
    return camera, placed
