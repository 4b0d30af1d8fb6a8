"""Renderer throughput: frames/s of ``render_video`` on the 1080p development clip.

    .venv/bin/python bench/renderer.py [--preset ultrafast] [--video PATH]

Two standing skeletons are drawn on every frame (2D and 3D), as in a real job. Skips with a
message when ../shared/data/video/two_people_office.avi is absent.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "proto")]

from hpe3d.v1 import common_pb2  # noqa: E402
from services.common.arrays import to_proto  # noqa: E402
from services.decoder.probe import probe_video  # noqa: E402
from services.renderer.pose_data import PoseTimeline  # noqa: E402
from services.renderer.video import render_video  # noqa: E402

CLIP = ROOT.parent / "shared" / "data" / "video" / "two_people_office.avi"


def standing_pose(x: float, z: float) -> np.ndarray:
    """A standing Human3.6M-17 pose [17, 3], metres, feet on y = 0."""
    pose = np.array([[0, .95, 0], [-.12, .95, 0], [-.12, .5, 0], [-.12, .05, 0], [.12, .95, 0], [.12, .5, 0],
                     [.12, .05, 0], [0, 1.2, 0], [0, 1.45, 0], [0, 1.55, .05], [0, 1.72, 0], [.18, 1.42, 0],
                     [.2, 1.15, 0], [.2, .9, 0], [-.18, 1.42, 0], [-.2, 1.15, 0], [-.2, .9, 0]], np.float32)
    return pose + np.array([x, 0, z], np.float32)


def synthetic_timeline(info: common_pb2.VideoInfo) -> PoseTimeline:
    n = info.frame_count
    tracks = []
    for track_id, (x, z) in enumerate(((-0.6, 3.0), (0.7, 4.0))):
        grounded = np.repeat(standing_pose(x, z)[None], n, axis=0)
        kp = np.zeros((n, 17, 3), np.float32)
        kp[..., 0] = info.width * (0.4 + 0.2 * track_id) + np.linspace(-60, 60, 17)
        kp[..., 1] = info.height * np.linspace(0.2, 0.9, 17)
        kp[..., 2] = 0.9
        tracks.append(common_pb2.Track3D(track_id=track_id, first_frame=0, frame_count=n,
                                         root_relative=to_proto(grounded - grounded[:, :1]),
                                         grounded=to_proto(grounded), keypoints2d=to_proto(kp)))
    return PoseTimeline([], common_pb2.Poses3D(tracks=tracks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--video", default=str(CLIP))
    parser.add_argument("--preset", default="ultrafast")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    if not Path(args.video).exists():
        print(f"skipped: {args.video} is not present (development data beside the checkout)")
        return
    info = probe_video(args.video).to_proto()
    timeline = synthetic_timeline(info)
    with tempfile.TemporaryDirectory() as tmp:
        best = 0.0
        for _ in range(args.repeat):
            started = time.perf_counter()
            for _ in render_video(args.video, info, timeline, f"{tmp}/render.mp4", preset=args.preset):
                pass
            best = max(best, info.frame_count / (time.perf_counter() - started))
    print(f"renderer: {info.width}x{info.height} {info.codec}, {info.frame_count} frames, preset {args.preset}: "
          f"{best:.1f} frames/s (best of {args.repeat}); load average {os.getloadavg()[0]:.2f} "
          "(other work on the machine slows this figure)")


if __name__ == "__main__":
    main()
