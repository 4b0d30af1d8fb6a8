"""Moving cameras with a known motion, made from a still clip: camera rotation error and world-path agreement.

Every frame of a still clip is warped by the homography ``K_out R(t) K_src^-1`` of a virtual camera that turns
(pan, tilt, roll) and zooms, into a narrower view than the clip's (the script checks that no border shows);
the same clip is also warped with ``R = I`` and no zoom (the still virtual camera, the same view as the
moving one's first frame). Both are encoded as H.264 files and run through the stages' own functions in this
process, as a job runs them (not through the gRPC stages and the queue): the decoder with camera motion
(:func:`services.decoder.segments.decode_segment_with_camera`, 128-frame segments, 640 px working size),
BlazePose run in process by LiteRT (:func:`services.pose2d.segment.estimate_segment`), the lifter with the
segments' camera motion (:func:`services.lifter3d.video_lift.lift_frames`, focal length not given: the
prior, or the one the turns show).

``K_src`` gives the clip a field of view of ``--src-fov`` degrees across its longer side (an assumption: any
value makes a valid virtual camera); ``K_out`` gives the output ``--out-fov`` degrees across its
``--out-size``, at the first frame. With ``--out-fov`` at the lifter's prior (57.5, the default) the still
view's prior focal length is right, so both runs are measured against the same geometry; a narrower
``--out-fov`` shows what a wrong prior does to the still run.

Printed per clip:

* camera rotation error: angle between the estimated and the true rotation of each frame relative to the
  first, degrees (median, 95th percentile, max) and the zoom's relative error; the frames' quality flags;
* world pelvis path: per person of the moving run, the distance to the same person of the still run (the
  track of the still run whose pelvis stays closest), per frame, in cm (median, 95th percentile); nothing is
  aligned (the two first frames are the same view);
* foot sliding of both runs: mean horizontal motion per frame (cm) of the lower ankle while it is within
  5 cm of its resting height in two consecutive frames.

    python -m training.evaluate_camera [--clip PATH ...] [--pan 10] [--tilt 5] [--roll 3] [--zoom 1.3]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from hpe3d.v1 import common_pb2
from services.common.arrays import from_proto
from services.common.rotating_camera import (apply_homography, intrinsics, rotation_angle_deg, rotation_from_quaternion,
                                             rotation_from_vector)
from services.common.skeletons import H36M17
from services.decoder.segments import decode_segment_with_camera
from services.lifter3d.camera import PRIOR_FOV_DEG
from services.lifter3d.contacts import ANKLE_HEIGHT_M
from services.lifter3d.video_lift import lift_frames, load_service_lifter
from services.pose2d.client import LocalBlazePose
from services.pose2d.estimator import EstimatorOptions
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


def run_job(path: Path, fps: float, models, lifter, max_persons: int) -> tuple[common_pb2.Poses3D, dict]:
    """Decode (with camera motion), 2D and lift a clip as a job's stages do; returns the lift and timings."""
    from services.decoder.probe import probe_video
    info = probe_video(str(path))
    poses2d, motions, seconds = [], [], {"decode+camera": 0.0, "pose2d": 0.0, "lift": 0.0}
    for start in range(0, info.frame_count, SEGMENT_FRAMES):
        began = time.perf_counter()
        segment, motion = decode_segment_with_camera(str(path), start, SEGMENT_FRAMES, WORKING_SIZE)
        seconds["decode+camera"] += time.perf_counter() - began
        began = time.perf_counter()
        poses2d.append(estimate_segment(segment, models, EstimatorOptions(max_persons=max_persons)))
        seconds["pose2d"] += time.perf_counter() - began
        motions.append(motion)
    began = time.perf_counter()
    frames = [f for p in poses2d for f in p.frames]
    poses3d = lift_frames(frames, info.width, info.height, lifter, fps=fps,
                          segment_starts=[p.start_frame for p in poses2d], camera_motions=motions)
    seconds["lift"] = time.perf_counter() - began
    return poses3d, seconds


def pelvis_paths(poses: common_pb2.Poses3D, frames: int) -> dict[int, np.ndarray]:
    """Per track: world pelvis ``[frames, 3]``, NaN where the track is absent."""
    out = {}
    for t in poses.tracks:
        path = np.full((frames, 3), np.nan)
        world = from_proto(t.world).reshape(-1, 17, 3)
        path[t.first_frame:t.first_frame + len(world)] = world[:, 0]
        out[t.track_id] = path
    return out


def path_distances_cm(moving: common_pb2.Poses3D, still: common_pb2.Poses3D, frames: int) -> np.ndarray:
    """Per frame and person of the moving run, the distance (cm) to the same person in the still run (the
    still track whose pelvis is closest in median)."""
    still_paths = pelvis_paths(still, frames)
    distances = []
    for path in pelvis_paths(moving, frames).values():
        best = None
        for other in still_paths.values():
            d = np.linalg.norm(path - other, axis=1)
            if np.isfinite(d).sum() >= 5 and (best is None or np.nanmedian(d) < np.nanmedian(best)):
                best = d
        if best is not None:
            distances.append(best[np.isfinite(best)])
    return 100 * np.concatenate(distances) if distances else np.zeros(0)


def foot_sliding_cm(poses: common_pb2.Poses3D) -> float:
    """Mean horizontal motion per frame (cm) of the lower ankle while it rests (within 5 cm of
    ``ANKLE_HEIGHT_M``) in two consecutive frames, over all tracks."""
    steps = []
    for t in poses.tracks:
        ankles = from_proto(t.world).reshape(-1, 17, 3)[:, _ANKLES].astype(np.float64)
        lower = np.argmin(ankles[..., 1], axis=1)
        for k in range(2):
            rest = (lower == k) & (ankles[:, k, 1] < ANKLE_HEIGHT_M + 0.05)
            both = rest[1:] & rest[:-1]
            moved = np.linalg.norm(np.diff(ankles[:, k, [0, 2]], axis=0), axis=1)
            steps.append(moved[both])
    steps = np.concatenate(steps) if steps else np.zeros(0)
    return float(100 * steps.mean()) if len(steps) else float("nan")


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


def evaluate_clip(clip: Path, args, models, lifter, workdir: Path) -> dict:
    frames, fps = read_frames(clip)
    frames = frames[:args.frames] if args.frames else frames
    h, w = frames[0].shape[:2]
    out_size = (round(w * args.out_scale / 2) * 2, round(h * args.out_scale / 2) * 2)
    moving_camera = VirtualCamera.sequence(len(frames), fps, args.pan, args.tilt, args.roll, args.zoom)
    runs = {}
    for name, camera in (("moving", moving_camera), ("still", VirtualCamera.still(len(frames)))):
        path = workdir / f"{clip.stem}_{name}.mp4"
        encode(path, warp_clip(frames, camera, args.src_fov, args.out_fov, out_size), fps)
        runs[name] = run_job(path, fps, models, lifter, args.max_persons)
    moving, still = runs["moving"][0], runs["still"][0]
    errors, zoom_errors = rotation_errors_deg(moving, moving_camera)
    distances = path_distances_cm(moving, still, len(frames))
    quality = {QUALITY_NAMES.get(q, str(q)): int(n) for q, n in zip(*np.unique(list(moving.camera.quality),
                                                                                return_counts=True))}
    return {
        "clip": clip.name, "frames": len(frames), "size": f"{out_size[0]}x{out_size[1]}",
        "true_focal_px": focal_for_fov(args.out_fov, *out_size),
        "focal_px": {"moving": moving.camera.focal_px, "still": still.camera.focal_px},
        "focal_from_prior": {"moving": moving.camera.focal_from_prior, "still": still.camera.focal_from_prior},
        "rotation_error_deg": {"median": float(np.median(errors)), "p95": float(np.percentile(errors, 95)),
                               "max": float(errors.max())},
        "zoom_error_pct": {"median": 100 * float(np.median(zoom_errors)), "max": 100 * float(zoom_errors.max())},
        "camera_quality": quality,
        "pelvis_path_cm": {"median": float(np.median(distances)) if len(distances) else None,
                           "p95": float(np.percentile(distances, 95)) if len(distances) else None},
        "tracks": {"moving": len(moving.tracks), "still": len(still.tracks)},
        "foot_sliding_cm_per_frame": {"moving": foot_sliding_cm(moving), "still": foot_sliding_cm(still)},
        "warnings": list(moving.warnings),
        "seconds": {k: {s: round(v, 2) for s, v in r[1].items()} for k, r in runs.items()},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, action="append", help="still clip(s); default: the test clip and "
                        "../shared/data/video/two_people_office.avi (when present)")
    parser.add_argument("--pan", type=float, default=10.0, help="pan amplitude, degrees")
    parser.add_argument("--tilt", type=float, default=5.0, help="tilt amplitude, degrees")
    parser.add_argument("--roll", type=float, default=3.0, help="roll at the end, degrees")
    parser.add_argument("--zoom", type=float, default=1.3, help="zoom at the end (1 = none)")
    parser.add_argument("--src-fov", type=float, default=90.0, help="field of view given to the clip, degrees")
    parser.add_argument("--out-fov", type=float, default=PRIOR_FOV_DEG,
                        help="field of view of the virtual camera at its first frame, degrees")
    parser.add_argument("--out-scale", type=float, default=2 / 3, help="output size over the clip's")
    parser.add_argument("--frames", type=int, default=0, help="only the first N frames (0: all)")
    parser.add_argument("--max-persons", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    clips = args.clip or [c for c in CLIPS if c.exists()]
    models, lifter = LocalBlazePose(num_threads=args.threads), load_service_lifter()
    results = []
    with tempfile.TemporaryDirectory(prefix="hpe3d-camera-") as tmp:
        for clip in clips:
            results.append(evaluate_clip(clip, args, models, lifter, Path(tmp)))
    print(f"Virtual camera: pan +-{args.pan:g} deg, tilt +-{args.tilt:g} deg, roll to {args.roll:g} deg, zoom to "
          f"{args.zoom:g}x; clip given a {args.src_fov:g} deg field of view, output {args.out_fov:g} deg at its first "
          f"frame; decoder + BlazePose (LiteRT) + lifter functions in this process")
    for r in results:
        e, p, s = r["rotation_error_deg"], r["pelvis_path_cm"], r["foot_sliding_cm_per_frame"]
        print(f"{r['clip']} ({r['frames']} frames, {r['size']}): camera rotation error median {e['median']:.2f} deg, "
              f"p95 {e['p95']:.2f}, max {e['max']:.2f}; zoom error median {r['zoom_error_pct']['median']:.1f} %; "
              f"frames {r['camera_quality']}")
        print(f"  focal length: true {r['true_focal_px']:.0f} px, moving run {r['focal_px']['moving']:.0f} px "
              f"({'prior' if r['focal_from_prior']['moving'] else 'from the turns'}), still run "
              f"{r['focal_px']['still']:.0f} px ({'prior' if r['focal_from_prior']['still'] else 'from the turns'})")
        print(f"  world pelvis path, moving vs still run: median {_cm(p['median'])}, p95 {_cm(p['p95'])} "
              f"({r['tracks']['moving']} / {r['tracks']['still']} tracks); foot sliding {s['moving']:.2f} cm/frame "
              f"moving, {s['still']:.2f} still")
        for warning in r["warnings"]:
            print(f"  warning: {warning}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def _cm(value: float | None) -> str:
    return f"{value:.1f} cm" if value is not None else "-"


if __name__ == "__main__":
    main()
