"""Moving cameras with a known motion, made from a still clip: camera rotation error and world-path agreement.

Every frame of a still clip is warped by the homography ``K_out R(t) K_src^-1`` of a virtual camera that turns
(pan, tilt, roll) and zooms, into a narrower view than the clip's (the script checks that no border shows);
the same clip is also warped with ``R = I`` and no zoom (the still virtual camera, the same view as the
moving one's first frame). Both are encoded as H.264 files and run through the stages' own functions in this
process, as a job runs them (not through the gRPC stages and the queue): the decoder
(:func:`services.decoder.segments.decode_segment`, 128-frame segments, 640 px working size), the 2D stage's
path with its models run in process (:func:`services.pose2d.people.estimate_segment_people`: the person
detector by ONNX Runtime, BlazePose's landmarks by LiteRT; ``--pose2d blazepose``: the former path with
BlazePose's own detector), the camera motion with the people of
the 2D kept out (:func:`services.decoder.segment_camera.track_segment_camera`), the lifter with the segments'
camera motion (:func:`services.lifter3d.video_lift.lift_frames`, focal length not given: the prior, or the
one the turns show).

``K_src`` gives the clip a field of view of ``--src-fov`` degrees across its longer side (an assumption: any
value makes a valid virtual camera); ``K_out`` gives the output ``--out-fov`` degrees across its
``--out-size``, at the first frame: the lens the lifter does not know.

A still camera shows nothing of its focal length, so the still run cannot find it: it is lifted with the
focal length the moving run found (the same lens: its first frame is the still view), so the comparison
measures what the camera's motion does to the world, not what an unknown lens does to depth; and again with
the prior, which is what a still clip through that lens gives alone (its pelvis paths differ from the moving
run's by the depth scale of the two focal lengths, unless ``--out-fov`` is the prior's 57.5 degrees).

Printed per clip:

* camera rotation error: angle between the estimated and the true rotation of each frame relative to the
  first, degrees (median, 95th percentile, max) and the zoom's relative error; the frames' quality flags;
  the camera motion's cost per frame (JPEG decoding included);
* focal length: true, found by the moving run (or the prior);
* world pelvis path: per person of the moving run and frame, the distance to the same person of the still
  run (the still run's person on whose 2D the moving run's 2D lands, mapped into the still view by the known
  virtual camera; track numbers need not agree), in cm (median, 95th percentile); nothing is aligned (the two
  first frames are the same view); the median against the still run with the prior; and the same distance in
  each run's first-frame camera axes (its own floor estimate undone: what is left is the placement; the rest
  of the world difference is the two floor estimates'), beside each run's camera pitch and height;
* per person of the still run, the first-frame camera-axes difference split into depth (along the line of
  sight) and lateral (across it), median cm;
* with ``--true-camera``: the same pelvis distance, split and foot sliding when the moving run is lifted with
  the virtual camera's exact motion and focal length, against the still run with the true focal length (what the
  2D of the moving view costs, with nothing of the camera estimate);
* foot sliding of the runs: mean horizontal motion per frame (cm) of the lower ankle while it is within
  5 cm of its resting height in two consecutive frames in which the 2D saw it (the virtual views crop the
  clip, and a zooming view crops more: an ankle outside the picture is the lifter's guess, in every run);
  again over only the person-frames matched in both runs, so neither counts a person or frame the other lacks.

``--seed S`` draws the virtual camera's sequence from ``S`` within the limits of ``--pan``, ``--tilt``,
``--roll`` and ``--zoom`` (:meth:`VirtualCamera.drawn`) instead of the fixed one.

    python -m training.evaluate_camera [--clip PATH ...] [--pan 10] [--tilt 5] [--roll 3] [--zoom 1.3] [--seed S]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from bench.local_models import LocalBlazePose, LocalPersonDetector
from hpe3d.v1 import common_pb2
from services.common.arrays import from_proto, to_proto
from services.common.rotating_camera import (apply_homography, intrinsics, rotation_angle_deg, rotation_from_quaternion,
                                             rotation_from_vector, rotation_homography)
from services.common.skeletons import H36M17, coco17_to_h36m17
from services.decoder.segment_camera import track_segment_camera
from services.decoder.segments import decode_segment
from services.lifter3d.camera import PRIOR_FOV_DEG
from services.lifter3d.contacts import ANKLE_HEIGHT_M
from services.lifter3d.video_lift import lift_frames, load_service_lifter
from services.lifter3d.world import ankles_seen
from services.common.settings import Settings
from services.pose2d.estimator import EstimatorOptions
from services.pose2d.keypoint_followers import BlazePoseFollower
from services.pose2d.people import PeopleOptions, estimate_segment_people
from services.pose2d.segment import estimate_segment

ROOT = Path(__file__).resolve().parent.parent
CLIPS = (ROOT / "tests" / "data" / "two_people_office_24f.mp4", ROOT.parent / "shared" / "data" / "video" /
         "two_people_office.avi")
SEGMENT_FRAMES = 128
WORKING_SIZE = 640
QUALITY_NAMES = {common_pb2.CAMERA_STILL: "still", common_pb2.CAMERA_TRACKED: "tracked",
                 common_pb2.CAMERA_HELD: "held", common_pb2.CAMERA_TRANSLATED: "translated"}
_ANKLES = [H36M17.index("left_ankle"), H36M17.index("right_ankle")]


@dataclass(frozen=True)
class VirtualCamera:
    """A camera motion over ``frames`` frames: pan (about the vertical), tilt and roll in degrees, zoom."""

    pan: np.ndarray
    tilt: np.ndarray
    roll: np.ndarray
    zoom: np.ndarray

    @classmethod
    def sequence(cls, frames: int, fps: float, pan: float, tilt: float, roll: float, zoom: float) -> "VirtualCamera":
        """A pan swinging to +``pan`` and back to -``pan`` degrees (one period over the clip), a tilt of
        ``tilt`` degrees on half that period, a roll growing steadily to ``roll`` degrees and a zoom growing
        steadily to ``zoom``; all start at 0 (and zoom 1), so the first frame is the still view."""
        s = np.arange(frames) / max(frames - 1, 1)
        return cls(pan * np.sin(2 * np.pi * s), tilt * np.sin(4 * np.pi * s), roll * s, 1 + (zoom - 1) * s)

    @classmethod
    def drawn(cls, frames: int, seed: int, pan: float, tilt: float, roll: float, zoom: float) -> "VirtualCamera":
        """A sequence drawn from ``seed`` within the limits of :meth:`sequence`: pan and tilt swings of a random
        direction, amplitude (half to all of ``pan`` / ``tilt`` degrees) and pace (0.5-1.5 periods over the clip
        for the pan, 1-2 for the tilt), a roll growing steadily to a random angle within +-``roll`` and a zoom
        growing steadily to a random factor from 30 % to all of the way to ``zoom``; all start at 0 (and
        zoom 1), so the first frame is the still view."""
        rng = np.random.default_rng(seed)
        s = np.arange(frames) / max(frames - 1, 1)
        pan_deg, tilt_deg = (rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.0) * a for a in (pan, tilt))
        pan_periods, tilt_periods = rng.uniform(0.5, 1.5), rng.uniform(1.0, 2.0)
        return cls(pan_deg * np.sin(2 * np.pi * pan_periods * s), tilt_deg * np.sin(2 * np.pi * tilt_periods * s),
                   rng.uniform(-1.0, 1.0) * roll * s, 1 + (zoom - 1) * rng.uniform(0.3, 1.0) * s)

    def describe(self) -> str:
        """The sequence in words: the range of each motion."""
        return (f"pan {self.pan.min():+.1f} to {self.pan.max():+.1f} deg, tilt {self.tilt.min():+.1f} to "
                f"{self.tilt.max():+.1f} deg, roll to {self.roll[-1]:+.1f} deg, zoom to {self.zoom[-1]:.2f}x")

    @classmethod
    def still(cls, frames: int) -> "VirtualCamera":
        zero = np.zeros(frames)
        return cls(zero, zero, zero, np.ones(frames))

    def rotation(self, t: int) -> np.ndarray:
        """Source camera vectors -> virtual camera vectors of frame ``t`` (roll after tilt after pan)."""
        return (rotation_from_vector([0, 0, np.radians(self.roll[t])]) @
                rotation_from_vector([np.radians(self.tilt[t]), 0, 0]) @
                rotation_from_vector([0, np.radians(self.pan[t]), 0]))


def focal_for_fov(fov_deg: float, width: int, height: int) -> float:
    return max(width, height) / 2 / np.tan(np.radians(fov_deg) / 2)


def read_frames(path: Path) -> tuple[list[np.ndarray], float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 30)
        return [f.to_ndarray(format="bgr24") for f in container.decode(stream)], fps


def warp_clip(frames: list[np.ndarray], camera: VirtualCamera, src_fov: float, out_fov: float,
              out_size: tuple[int, int]) -> list[np.ndarray]:
    """Every frame through the virtual camera; raises when a frame would show a border."""
    h, w = frames[0].shape[:2]
    k_src_inv = np.linalg.inv(intrinsics(focal_for_fov(src_fov, w, h), w, h))
    ow, oh = out_size
    f_out = focal_for_fov(out_fov, ow, oh)
    corners = np.array([[0, 0], [ow, 0], [0, oh], [ow, oh], [ow / 2, 0], [ow / 2, oh], [0, oh / 2], [ow, oh / 2]],
                       np.float64)
    out = []
    for t, frame in enumerate(frames):
        homography = intrinsics(f_out * camera.zoom[t], ow, oh) @ camera.rotation(t) @ k_src_inv
        seen = apply_homography(np.linalg.inv(homography), corners)
        if (seen < 0).any() or (seen[:, 0] > w).any() or (seen[:, 1] > h).any():
            raise ValueError(f"frame {t}: the virtual view leaves the clip (a border would show); turn less, zoom in "
                             f"or narrow --out-fov")
        out.append(cv2.warpPerspective(frame, homography, (ow, oh), flags=cv2.INTER_LINEAR))
    return out


def encode(path: Path, frames: list[np.ndarray], fps: float) -> None:
    """H.264 at a high quality (crf 18), as a phone would store it."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=round(fps))
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(stream.encode())


@dataclass
class StageOutputs:
    """What the stages before the lifter give for one clip, and the seconds each took."""

    info: object
    poses2d: list[common_pb2.Poses2D]
    motions: list[common_pb2.CameraMotion]
    seconds: dict[str, float]


def segment_estimator(path: str, max_persons: int, threads: int
                      ) -> Callable[[common_pb2.FrameSegment], common_pb2.Poses2D]:
    """One segment's 2D by the models of the model repository run here: ``people``, the stage's path
    (:func:`services.pose2d.people.estimate_segment_people`), or ``blazepose``, BlazePose's own detector
    (:func:`services.pose2d.segment.estimate_segment`); ``max_persons`` 0: the stage's default."""
    max_persons = max_persons or Settings().max_persons
    blazepose = LocalBlazePose(num_threads=threads)
    if path == "blazepose":
        return lambda segment: estimate_segment(segment, blazepose, EstimatorOptions(max_persons=max_persons))
    detector, options = LocalPersonDetector(num_threads=threads), PeopleOptions(max_persons=max_persons)
    return lambda segment: estimate_segment_people(segment, detector, BlazePoseFollower(blazepose), options)


def run_stages(path: Path, estimate: Callable[[common_pb2.FrameSegment], common_pb2.Poses2D]) -> StageOutputs:
    """Decode, 2D (``estimate``: one segment's 2D) and camera motion of a clip as a job's stages do (camera
    motion after the 2D, each segment anchored to the one before)."""
    from services.decoder.probe import probe_video
    info = probe_video(str(path))
    segments, poses2d = [], []
    seconds = {"decode": 0.0, "pose2d": 0.0, "camera": 0.0}
    for start in range(0, info.frame_count, SEGMENT_FRAMES):
        began = time.perf_counter()
        segments.append(decode_segment(str(path), start, SEGMENT_FRAMES, WORKING_SIZE))
        seconds["decode"] += time.perf_counter() - began
        began = time.perf_counter()
        poses2d.append(estimate(segments[-1]))
        seconds["pose2d"] += time.perf_counter() - began
    began = time.perf_counter()
    motions = [track_segment_camera(segment, poses, *((segments[i - 1], poses2d[i - 1]) if i else ()))
               for i, (segment, poses) in enumerate(zip(segments, poses2d))]
    seconds["camera"] = time.perf_counter() - began
    return StageOutputs(info, poses2d, motions, seconds)


def lift(stages: StageOutputs, fps: float, lifter, with_camera: bool, focal_px: float = 0.0,
         motions: list[common_pb2.CameraMotion] | None = None) -> common_pb2.Poses3D:
    """The lifter on a clip's 2D, with its camera motion (or ``motions``) or without (a still camera);
    ``focal_px`` 0: the lifter's own choice (the prior, or the one the turns show)."""
    frames = [f for p in stages.poses2d for f in p.frames]
    began = time.perf_counter()
    poses3d = lift_frames(frames, stages.info.width, stages.info.height, lifter, fps=fps, focal_px=focal_px,
                          segment_starts=[p.start_frame for p in stages.poses2d],
                          camera_motions=(motions or stages.motions) if with_camera else None)
    stages.seconds["lift"] = time.perf_counter() - began
    return poses3d


def lifted(poses: common_pb2.Poses3D) -> list[common_pb2.Track3D]:
    """The tracks that were lifted (a track seen too briefly or too small is given in 2D only, with
    ``not_lifted`` saying why)."""
    return [t for t in poses.tracks if not t.not_lifted]


def pelvis_paths(poses: common_pb2.Poses3D, frames: int) -> dict[int, np.ndarray]:
    """Per track: world pelvis ``[frames, 3]``, NaN where the track is absent."""
    out = {}
    for t in lifted(poses):
        path = np.full((frames, 3), np.nan)
        world = from_proto(t.world).reshape(-1, 17, 3)
        path[t.first_frame:t.first_frame + len(world)] = world[:, 0]
        out[t.track_id] = path
    return out


#: A person of the moving run is the same as one of the still run in a frame when their 2D joints, the moving
#: view's mapped into the still view through the known virtual camera, lie on average within this share of
#: the still person's 2D height of each other (at least :data:`MATCH_MIN_PX` pixels).
MATCH_SHARE = 0.1
MATCH_MIN_PX = 20.0
_JOINT_SCORE = 0.3


def moving_to_still(camera: VirtualCamera, t: int, focal_px: float, width: int, height: int) -> np.ndarray:
    """``[3, 3]`` pixels of the moving view's frame ``t`` -> pixels of the still view's frame ``t`` (the still
    view is the virtual camera without turn or zoom)."""
    return (intrinsics(focal_px, width, height) @ camera.rotation(t).T @
            np.linalg.inv(intrinsics(focal_px * camera.zoom[t], width, height)))


def _frame_people(poses: common_pb2.Poses3D, frames: int, camera_axes: bool = False
                  ) -> list[list[tuple[np.ndarray, np.ndarray, int]]]:
    """Per frame, each lifted person's (COCO-17 2D ``[17, 3]``, world pelvis ``[3]``, track number); with
    ``camera_axes`` the pelvis in the first frame's camera axes instead (the world turned and shifted back by
    the run's own floor estimate: what is left is the placement before the floor)."""
    out: list[list[tuple[np.ndarray, np.ndarray, int]]] = [[] for _ in range(frames)]
    first = rotation_from_quaternion(from_proto(poses.camera.rotations).reshape(-1, 4)[:1])[0]
    centre = np.array([0.0, poses.camera.height_m, 0.0])
    for t in lifted(poses):
        pelvis = from_proto(t.world).reshape(-1, 17, 3)[:, 0].astype(np.float64)
        pelvis = (pelvis - centre) @ first if camera_axes else pelvis
        keypoints = from_proto(t.keypoints2d).reshape(-1, 17, 3)
        for i in range(min(len(pelvis), frames - t.first_frame)):
            out[t.first_frame + i].append((keypoints[i], pelvis[i], t.track_id))
    return out


@dataclass(frozen=True)
class MatchedPelvis:
    """One person-frame of the moving run and the same person's in the still run: frame, both runs' track
    numbers, and both pelvises (world, or the first frame's camera axes)."""

    frame: int
    moving_track: int
    still_track: int
    moving: np.ndarray
    still: np.ndarray


def matched_pelvises(moving: common_pb2.Poses3D, still: common_pb2.Poses3D, camera: VirtualCamera,
                     focal_px: float, size: tuple[int, int], camera_axes: bool = False
                     ) -> tuple[list[MatchedPelvis], int]:
    """Per frame and person of the moving run, the same person's pelvis in the still run, and how many
    person-frames the moving run lifted. The same person: in that frame, the still run's person on whose 2D
    joints the moving run's 2D joints land, mapped into the still view by the known virtual camera
    (:func:`moving_to_still`; :data:`MATCH_SHARE`; each still person taken once, closest first), so that the
    two runs' track numbers need not agree. ``camera_axes``: both pelvises in their run's first-frame camera
    axes (:func:`_frame_people`)."""
    frames = len(camera.zoom)
    matches, lifted_frames = [], 0
    for t, (ours, theirs) in enumerate(zip(_frame_people(moving, frames, camera_axes),
                                           _frame_people(still, frames, camera_axes))):
        lifted_frames += len(ours)
        mapping = moving_to_still(camera, t, focal_px, *size)
        pairs = []
        for i, (kp, _, _) in enumerate(ours):
            mapped = apply_homography(mapping, kp[:, :2])
            for j, (other, _, _) in enumerate(theirs):
                both = (kp[:, 2] >= _JOINT_SCORE) & (other[:, 2] >= _JOINT_SCORE)
                seen = other[other[:, 2] >= _JOINT_SCORE, 1]
                if both.sum() < 4 or len(seen) < 2:
                    continue
                gap = float(np.linalg.norm(mapped[both] - other[both, :2], axis=1).mean())
                if gap <= max(MATCH_MIN_PX, MATCH_SHARE * (seen.max() - seen.min())):
                    pairs.append((gap, i, j))
        used_i, used_j = set(), set()
        for _, i, j in sorted(pairs):
            if i not in used_i and j not in used_j:
                used_i.add(i)
                used_j.add(j)
                matches.append(MatchedPelvis(t, ours[i][2], theirs[j][2], ours[i][1], theirs[j][1]))
    return matches, lifted_frames


def path_distances_cm(moving: common_pb2.Poses3D, still: common_pb2.Poses3D, camera: VirtualCamera,
                      focal_px: float, size: tuple[int, int], camera_axes: bool = False) -> tuple[np.ndarray, int]:
    """Per matched person-frame (:func:`matched_pelvises`), the distance (cm) between the moving run's pelvis
    and the still run's, and how many person-frames the moving run lifted."""
    matches, lifted_frames = matched_pelvises(moving, still, camera, focal_px, size, camera_axes)
    return np.array([100 * float(np.linalg.norm(m.moving - m.still)) for m in matches]), lifted_frames


def depth_and_lateral_cm(moving: common_pb2.Poses3D, still: common_pb2.Poses3D, camera: VirtualCamera,
                         focal_px: float, size: tuple[int, int]) -> dict[int, dict]:
    """The first-frame camera-axes pelvis difference (moving minus still) of every matched person-frame split
    into depth (along the still pelvis's line of sight from the camera) and lateral (across it), per person
    of the still run: frames, still distance (m), median signed and absolute depth (cm), median lateral (cm)."""
    matches, _ = matched_pelvises(moving, still, camera, focal_px, size, camera_axes=True)
    out = {}
    for track in sorted({m.still_track for m in matches}):
        rows = [m for m in matches if m.still_track == track]
        sight = np.array([m.still / np.linalg.norm(m.still) for m in rows])
        diff = np.array([m.moving - m.still for m in rows])
        depth = np.sum(diff * sight, axis=1)
        lateral = np.linalg.norm(diff - depth[:, None] * sight, axis=1)
        out[int(track)] = {"frames": len(rows),
                           "distance_m": float(np.median([np.linalg.norm(m.still) for m in rows])),
                           "depth_cm": 100 * float(np.median(depth)),
                           "depth_abs_cm": 100 * float(np.median(np.abs(depth))),
                           "lateral_cm": 100 * float(np.median(lateral))}
    return out


def foot_sliding_cm(poses: common_pb2.Poses3D, fps: float, frames_of: dict[int, set[int]] | None = None
                    ) -> tuple[float, int]:
    """Mean horizontal motion per frame (cm) of the lower ankle while it rests (within 5 cm of
    ``ANKLE_HEIGHT_M``) in two consecutive frames in which the 2D saw it (:func:`services.lifter3d.world.
    ankles_seen`: an ankle outside the picture is guessed by the lifter, and its motion says nothing of the
    placement), over all tracks; and how many frame pairs that counted. ``frames_of``: only these video
    frames of each track (track number -> frames; both frames of a pair)."""
    steps = []
    for t in lifted(poses):
        if frames_of is not None and t.track_id not in frames_of:
            continue
        ankles = from_proto(t.world).reshape(-1, 17, 3)[:, _ANKLES].astype(np.float64)
        seen = ankles_seen(coco17_to_h36m17(from_proto(t.keypoints2d).reshape(-1, 17, 3)), fps)
        lower = np.argmin(ankles[..., 1], axis=1)
        for k in range(2):
            rest = (lower == k) & (ankles[:, k, 1] < ANKLE_HEIGHT_M + 0.05) & seen[:, k]
            if frames_of is not None:
                rest &= np.isin(t.first_frame + np.arange(len(rest)), list(frames_of[t.track_id]))
            both = rest[1:] & rest[:-1]
            moved = np.linalg.norm(np.diff(ankles[:, k, [0, 2]], axis=0), axis=1)
            steps.append(moved[both])
    steps = np.concatenate(steps) if steps else np.zeros(0)
    return (float(100 * steps.mean()) if len(steps) else float("nan")), len(steps)


def matched_sliding_cm(moving: common_pb2.Poses3D, still: common_pb2.Poses3D, camera: VirtualCamera,
                       focal_px: float, size: tuple[int, int], fps: float) -> dict[str, tuple[float, int]]:
    """Foot sliding (:func:`foot_sliding_cm`) of both runs over the same persons and frames only: the
    person-frames matched between them (:func:`matched_pelvises`), so that neither run counts a person or a
    frame the other did not lift."""
    matches, _ = matched_pelvises(moving, still, camera, focal_px, size)
    frames_of: dict[str, dict[int, set[int]]] = {"moving": {}, "still": {}}
    for m in matches:
        frames_of["moving"].setdefault(m.moving_track, set()).add(m.frame)
        frames_of["still"].setdefault(m.still_track, set()).add(m.frame)
    return {"moving": foot_sliding_cm(moving, fps, frames_of["moving"]),
            "still": foot_sliding_cm(still, fps, frames_of["still"])}


def rotation_errors_deg(poses: common_pb2.Poses3D, camera: VirtualCamera) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: angle between the estimated and true rotation relative to the first frame, and the zoom's
    relative error."""
    estimated = rotation_from_quaternion(from_proto(poses.camera.rotations).reshape(-1, 4))
    focal = from_proto(poses.camera.focal_per_frame)
    errors, zoom_errors = [], []
    first = camera.rotation(0)
    for t in range(len(camera.zoom)):
        got = estimated[0].T @ estimated[t]           # camera t -> camera 0
        truth = first @ camera.rotation(t).T
        errors.append(rotation_angle_deg(got.T @ truth))
        zoom_errors.append(abs(focal[t] / focal[0] / (camera.zoom[t] / camera.zoom[0]) - 1))
    return np.array(errors), np.array(zoom_errors)


def evaluate_clip(clip: Path, args, estimate, lifter, workdir: Path) -> dict:
    frames, fps = read_frames(clip)
    frames = frames[:args.frames] if args.frames else frames
    h, w = frames[0].shape[:2]
    out_size = (round(w * args.out_scale / 2) * 2, round(h * args.out_scale / 2) * 2)
    moving_camera = moving_sequence(len(frames), fps, args)
    stages = {}
    for name, camera in (("moving", moving_camera), ("still", VirtualCamera.still(len(frames)))):
        path = workdir / f"{clip.stem}_{name}.mp4"
        encode(path, warp_clip(frames, camera, args.src_fov, args.out_fov, out_size), fps)
        stages[name] = run_stages(path, estimate)
    return compare_runs(clip.name, stages["moving"], stages["still"], moving_camera, fps, lifter, args.out_fov,
                        out_size, args.true_camera)


def moving_sequence(frames: int, fps: float, args) -> VirtualCamera:
    """The moving virtual camera the options ask for: :meth:`VirtualCamera.sequence`, or with ``--seed`` one
    drawn within the same limits (:meth:`VirtualCamera.drawn`)."""
    if args.seed:
        return VirtualCamera.drawn(frames, args.seed, args.pan, args.tilt, args.roll, args.zoom)
    return VirtualCamera.sequence(frames, fps, args.pan, args.tilt, args.roll, args.zoom)


def true_motion(camera: VirtualCamera, focal_px: float, width: int, height: int) -> common_pb2.CameraMotion:
    """The virtual camera's exact motion as the decoder stores it: every frame's homography from the first,
    at the working size."""
    scale = min(1.0, WORKING_SIZE / max(width, height))
    w, h, f = width * scale, height * scale, focal_px * scale
    motion = common_pb2.CameraMotion(start_frame=0, frame_count=len(camera.zoom), width=round(w), height=round(h))
    first = camera.rotation(0)
    for t in range(len(camera.zoom)):
        homography = rotation_homography(camera.rotation(t) @ first.T, f * camera.zoom[0], f * camera.zoom[t], w, h)
        motion.steps.add(frame_index=t, reference_frame=0, homography=to_proto(homography / homography[2, 2]),
                         points=100, inlier_ratio=1.0, reliable=True,
                         support=common_pb2.BoundingBox(x_min=0, y_min=0, x_max=w, y_max=h))
    return motion


def compare_runs(name: str, moving_stages: StageOutputs, still_stages: StageOutputs, moving_camera: VirtualCamera,
                 fps: float, lifter, out_fov: float, out_size: tuple[int, int], true_camera: bool = False) -> dict:
    """The figures of one clip (see the module doc) from the stage outputs of its moving and still views;
    with ``true_camera`` also those of the moving run lifted with the virtual camera's exact motion and focal
    length (what the 2D of the moving view alone costs)."""
    frames = len(moving_camera.zoom)
    moving = lift(moving_stages, fps, lifter, with_camera=True)
    # the still view is the moving camera's first frame, through the same lens: it is lifted with the focal
    # length the moving run found (a still camera shows none), and with the prior as a still clip alone is
    still = lift(still_stages, fps, lifter, with_camera=False,
                 focal_px=0.0 if moving.camera.focal_from_prior else moving.camera.focal_px)
    still_prior = lift(still_stages, fps, lifter, with_camera=False)
    runs = {"moving": moving, "still": still, "still_prior": still_prior}
    true_focal = focal_for_fov(out_fov, *out_size)
    if true_camera:   # the moving run's 2D with the exact camera, against the still run with the true lens
        runs["moving_true_camera"] = lift(moving_stages, fps, lifter, True, true_focal,
                                          [true_motion(moving_camera, true_focal, *out_size)])
        runs["still_true_focal"] = lift(still_stages, fps, lifter, False, true_focal)
    errors, zoom_errors = rotation_errors_deg(moving, moving_camera)
    view = (moving_camera, true_focal, out_size)
    distances, moving_frames = path_distances_cm(moving, still, *view)
    prior_distances, _ = path_distances_cm(moving, still_prior, *view)
    axes_distances, _ = path_distances_cm(moving, still, *view, camera_axes=True)
    quality = {QUALITY_NAMES.get(q, str(q)): int(n) for q, n in zip(*np.unique(list(moving.camera.quality),
                                                                                return_counts=True))}

    def spread(d: np.ndarray) -> dict:
        return {"median": float(np.median(d)) if len(d) else None,
                "p95": float(np.percentile(d, 95)) if len(d) else None}

    return {
        "clip": name, "frames": frames, "size": f"{out_size[0]}x{out_size[1]}", "sequence": moving_camera.describe(),
        "true_focal_px": true_focal,
        "focal_px": {"moving": moving.camera.focal_px, "still": still.camera.focal_px,
                     "still_prior": still_prior.camera.focal_px},
        "focal_from_prior": {"moving": moving.camera.focal_from_prior},
        "rotation_error_deg": {"median": float(np.median(errors)), "p95": float(np.percentile(errors, 95)),
                               "max": float(errors.max())},
        "zoom_error_pct": {"median": 100 * float(np.median(zoom_errors)), "max": 100 * float(zoom_errors.max())},
        "camera_quality": quality,
        "pelvis_path_cm": spread(distances),
        "pelvis_path_cm_still_prior": spread(prior_distances),
        "person_frames": {"moving": moving_frames, "matched": len(distances)},
        "pelvis_camera_axes_cm": spread(axes_distances),
        "depth_and_lateral": depth_and_lateral_cm(moving, still, *view),
        "floor": {k: {"pitch_deg": p.camera.pitch_deg, "height_m": p.camera.height_m}
                  for k, p in (("moving", moving), ("still", still))},
        "tracks": {"moving": len(lifted(moving)), "still": len(lifted(still))},
        "foot_sliding_cm_per_frame": {k: foot_sliding_cm(p, fps)[0] for k, p in runs.items()},
        "foot_sliding_frames": {k: foot_sliding_cm(p, fps)[1] for k, p in runs.items()},
        "foot_sliding_matched": matched_sliding_cm(moving, still, *view, fps),
        "camera_ms_per_frame": 1000 * moving_stages.seconds["camera"] / frames,
        "true_camera": ({"pelvis_path_cm": spread(path_distances_cm(runs["moving_true_camera"],
                                                                    runs["still_true_focal"], *view)[0]),
                         "pelvis_camera_axes_cm": spread(path_distances_cm(runs["moving_true_camera"],
                                                                           runs["still_true_focal"], *view,
                                                                           camera_axes=True)[0]),
                         "depth_and_lateral": depth_and_lateral_cm(runs["moving_true_camera"],
                                                                   runs["still_true_focal"], *view),
                         "foot_sliding_matched": matched_sliding_cm(runs["moving_true_camera"],
                                                                    runs["still_true_focal"], *view, fps),
                         "floor": {k: {"pitch_deg": runs[k].camera.pitch_deg, "height_m": runs[k].camera.height_m}
                                   for k in ("moving_true_camera", "still_true_focal")}}
                        if true_camera else None),
        "warnings": list(moving.warnings),
        "seconds": {k: {s: round(v, 2) for s, v in r.seconds.items()}
                    for k, r in (("moving", moving_stages), ("still", still_stages))},
    }


def print_figures(r: dict) -> None:
    """One clip's figures (:func:`compare_runs`), as the command prints them."""
    e, p, s = r["rotation_error_deg"], r["pelvis_path_cm"], r["foot_sliding_cm_per_frame"]
    f, prior = r["focal_px"], r["pelvis_path_cm_still_prior"]
    print(f"{r['clip']} ({r['frames']} frames, {r['size']}): camera rotation error median {e['median']:.2f} deg, "
          f"p95 {e['p95']:.2f}, max {e['max']:.2f}; zoom error median {r['zoom_error_pct']['median']:.1f} %; "
          f"frames {r['camera_quality']}; camera motion {r['camera_ms_per_frame']:.1f} ms/frame")
    print(f"  virtual camera: {r['sequence']}")
    print(f"  focal length: true {r['true_focal_px']:.0f} px, moving run {f['moving']:.0f} px "
          f"({'prior' if r['focal_from_prior']['moving'] else 'from the turns'}); the still run is lifted with "
          f"the same, and again with the prior ({f['still_prior']:.0f} px)")
    m = r["person_frames"]
    print(f"  world pelvis path, moving vs still run: median {_cm(p['median'])}, p95 {_cm(p['p95'])} "
          f"({m['matched']} of the moving run's {m['moving']} lifted person-frames matched in the still run; "
          f"{r['tracks']['moving']} / {r['tracks']['still']} tracks); vs the still run with the prior: median "
          f"{_cm(prior['median'])}")
    a, fl = r["pelvis_camera_axes_cm"], r["floor"]
    print(f"  the same in the first frame's camera axes (each run's floor estimate undone): median "
          f"{_cm(a['median'])}, p95 {_cm(a['p95'])}; floor: camera pitch {fl['moving']['pitch_deg']:.1f} deg, "
          f"height {fl['moving']['height_m']:.2f} m moving, {fl['still']['pitch_deg']:.1f} deg, "
          f"{fl['still']['height_m']:.2f} m still")
    _print_depth_and_lateral(r["depth_and_lateral"])
    n = r["foot_sliding_frames"]
    print(f"  foot sliding of ankles seen in 2D: {s['moving']:.2f} cm/frame moving ({n['moving']} frame pairs), "
          f"{s['still']:.2f} still ({n['still']}; {s['still_prior']:.2f} with the prior)")
    _print_matched_sliding(r["foot_sliding_matched"])
    if r["true_camera"]:
        t, n = r["true_camera"]["pelvis_path_cm"], r["foot_sliding_frames"]
        print(f"  with the virtual camera's exact motion and focal length: pelvis path vs the still run (true "
              f"focal length) median {_cm(t['median'])}, p95 {_cm(t['p95'])}; foot sliding "
              f"{s['moving_true_camera']:.2f} cm/frame moving ({n['moving_true_camera']}), "
              f"{s['still_true_focal']:.2f} still ({n['still_true_focal']})")
        a, fl = r["true_camera"]["pelvis_camera_axes_cm"], r["true_camera"]["floor"]
        print(f"    in the first frame's camera axes: median {_cm(a['median'])}, p95 {_cm(a['p95'])}; floor: camera "
              f"pitch {fl['moving_true_camera']['pitch_deg']:.1f} deg, height "
              f"{fl['moving_true_camera']['height_m']:.2f} m moving, {fl['still_true_focal']['pitch_deg']:.1f} deg, "
              f"{fl['still_true_focal']['height_m']:.2f} m still")
        _print_depth_and_lateral(r["true_camera"]["depth_and_lateral"], "  ")
        _print_matched_sliding(r["true_camera"]["foot_sliding_matched"], "  ")
    for warning in r["warnings"]:
        print(f"  warning: {warning}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, action="append", help="still clip(s); default: the test clip and "
                        "../shared/data/video/two_people_office.avi (when present)")
    parser.add_argument("--pan", type=float, default=10.0, help="pan amplitude, degrees")
    parser.add_argument("--tilt", type=float, default=5.0, help="tilt amplitude, degrees")
    parser.add_argument("--roll", type=float, default=3.0, help="roll at the end, degrees")
    parser.add_argument("--zoom", type=float, default=1.3, help="zoom at the end (1 = none)")
    parser.add_argument("--seed", type=int, default=0, help="draw the sequence from this seed within the limits "
                        "of --pan, --tilt, --roll and --zoom (random direction, amplitude and pace); 0: the fixed one")
    parser.add_argument("--src-fov", type=float, default=90.0, help="field of view given to the clip, degrees")
    parser.add_argument("--out-fov", type=float, default=PRIOR_FOV_DEG,
                        help="field of view of the virtual camera at its first frame, degrees")
    parser.add_argument("--out-scale", type=float, default=2 / 3, help="output size over the clip's")
    parser.add_argument("--frames", type=int, default=0, help="only the first N frames (0: all)")
    parser.add_argument("--pose2d", choices=("people", "blazepose"), default="people",
                        help="2D path: the stage's (person detector + BlazePose landmarks) or the former one "
                        "(BlazePose's own detector)")
    parser.add_argument("--max-persons", type=int, default=0, help="0: the stage's default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--true-camera", action="store_true", help="also lift the moving run with the virtual "
                        "camera's exact motion and focal length (what the moving view's 2D alone costs)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    clips = args.clip or [c for c in CLIPS if c.exists()]
    estimate, lifter = segment_estimator(args.pose2d, args.max_persons, args.threads), load_service_lifter()
    results = []
    with tempfile.TemporaryDirectory(prefix="hpe3d-camera-") as tmp:
        for clip in clips:
            results.append(evaluate_clip(clip, args, estimate, lifter, Path(tmp)))
    sequence = (f"drawn from seed {args.seed} within pan +-{args.pan:g} deg, tilt +-{args.tilt:g} deg, roll "
                f"+-{args.roll:g} deg, zoom to {args.zoom:g}x (per clip below)" if args.seed else
                f"pan +-{args.pan:g} deg, tilt +-{args.tilt:g} deg, roll to {args.roll:g} deg, zoom to {args.zoom:g}x")
    print(f"Virtual camera: {sequence}; clip given a {args.src_fov:g} deg field of view, output {args.out_fov:g} deg "
          f"at its first frame; decoder, 2D ({args.pose2d} path), camera motion and lifter functions in this process")
    for r in results:
        print_figures(r)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def _print_depth_and_lateral(people: dict[int, dict], indent: str = "") -> None:
    """The per-person split of :func:`depth_and_lateral_cm`, one line."""
    parts = [f"person {track} ({p['frames']} frames, {p['distance_m']:.1f} m away): depth {p['depth_cm']:+.1f} "
             f"(|{p['depth_abs_cm']:.1f}|), lateral {p['lateral_cm']:.1f}" for track, p in people.items()]
    print(f"  {indent}first-frame camera axes, moving minus still, median cm per person of the still run: "
          + ("; ".join(parts) or "-"))


def _print_matched_sliding(sliding: dict[str, tuple[float, int]], indent: str = "") -> None:
    (moving, moving_pairs), (still, still_pairs) = sliding["moving"], sliding["still"]
    print(f"  {indent}the same, on the person-frames both runs lifted (matched): {moving:.2f} cm/frame moving "
          f"({moving_pairs} frame pairs), {still:.2f} still ({still_pairs})")


def _cm(value: float | None) -> str:
    return f"{value:.1f} cm" if value is not None else "-"


if __name__ == "__main__":
    main()
