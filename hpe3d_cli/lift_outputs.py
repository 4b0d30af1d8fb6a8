"""What ``hpe3d lift`` writes: the same poses.json (schema 2.0) as a job's, and optionally the BVH files.

The 2D tracks of a keypoint file are lifted and placed in one world frame by the lifter's own
``lift_tracks`` (as the lifter stage does), gathered into a ``Poses3D`` message, and exported by the
renderer's ``poses_json`` and ``bvh_files``: one producer of each export for jobs and for this command.
"""
from __future__ import annotations

from pathlib import Path

import torch

from hpe3d.v1 import common_pb2
from services.common.arrays import to_proto
from services.lifter3d.video_lift import lift_tracks
from services.renderer.exports import bvh_files, poses_json
from services.renderer.pose_data import PoseTimeline

from .keypoints_io import KeypointInput

ASSUMED_FPS = 30.0


def frame_rate(doc: dict, override: float | None) -> tuple[float, list[str]]:
    """Frames per second of a keypoint file: ``override`` (``--fps``), else our poses.json's ``video.fps``,
    else :data:`ASSUMED_FPS` with a warning saying so (GAST-Net files record no rate)."""
    if override is not None:
        if override <= 0:
            raise ValueError(f"--fps must be positive, got {override}")
        return float(override), []
    video = doc.get("video") if isinstance(doc.get("video"), dict) else {}
    recorded = video.get("fps")
    if isinstance(recorded, (int, float)) and recorded > 0:
        return float(recorded), []
    if video.get("still_image"):
        return 0.0, []
    return ASSUMED_FPS, [f"the keypoint file records no frame rate: {ASSUMED_FPS:g} fps assumed (pass --fps)"]


def video_info(parsed: KeypointInput, doc: dict, fps: float) -> common_pb2.VideoInfo:
    """The frame geometry and timing of a keypoint file, as ``Decoder.Probe`` would report a video's."""
    video = doc.get("video") if isinstance(doc.get("video"), dict) else {}
    frames = doc.get("frames") if isinstance(doc.get("frames"), list) else []
    times = [f.get("timestamp_s") for f in frames if isinstance(f, dict)]
    if len(times) != parsed.frame_count or not all(isinstance(t, (int, float)) for t in times):
        times = [i / fps if fps > 0 else 0.0 for i in range(parsed.frame_count)]
    return common_pb2.VideoInfo(
        width=int(parsed.width), height=int(parsed.height), fps=fps, frame_count=parsed.frame_count,
        duration_s=parsed.frame_count / fps if fps > 0 else 0.0, rotation_deg=int(video.get("rotation_deg") or 0),
        still_image=bool(video.get("still_image")), timestamps_s=times)


def lift_to_poses3d(parsed: KeypointInput, model: torch.nn.Module, model_name: str, fps: float,
                    focal_px: float = 0.0, progress=None) -> common_pb2.Poses3D:
    """Lift every track of ``parsed`` and place them in one world frame (``focal_px`` 0 = the prior)."""
    camera, lifted = lift_tracks([t.keypoints for t in parsed.tracks], parsed.width, parsed.height, model,
                                 focal_px, fps, progress)
    result = common_pb2.Poses3D(model=model_name, camera=common_pb2.CameraEstimate(
        focal_px=camera.focal_px, focal_from_prior=camera.focal_from_prior, pitch_deg=camera.pitch_deg,
        height_m=camera.height_m))
    for track, (lift, placed) in zip(parsed.tracks, lifted):
        result.tracks.append(common_pb2.Track3D(
            track_id=track.track_id, first_frame=track.first_frame, frame_count=len(track.keypoints),
            root_relative=to_proto(lift.world), grounded=to_proto(lift.grounded),
            keypoints2d=to_proto(lift.keypoints_2d), world=to_proto(placed.world),
            foot_contacts=to_proto(placed.contacts.astype("float32"))))
    return result


def write_outputs(info: common_pb2.VideoInfo, poses3d: common_pb2.Poses3D, output: Path,
                  bvh_dir: Path | None = None, warnings: list[str] = ()) -> list[Path]:
    """Write poses.json to ``output`` and, with ``bvh_dir``, ``person_<track>.bvh`` files there; returns the
    paths written."""
    timeline = PoseTimeline([], poses3d)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(poses_json(info, timeline, list(warnings)))
    written = [output]
    if bvh_dir is not None:
        bvh_dir.mkdir(parents=True, exist_ok=True)
        for name, data in bvh_files(info, timeline):
            (bvh_dir / name).write_bytes(data)
            written.append(bvh_dir / name)
    return written
