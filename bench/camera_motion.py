"""Camera-motion cost: milliseconds per frame on one CPU core, at the working size, of ``BackgroundTracker.add``
and of the whole stage step (``track_segment_camera``: the stored JPEG frames decoded, then followed).

    .venv/bin/python bench/camera_motion.py [--video PATH] [--working-size 640] [--repeat 5]

The clip (default ../shared/data/video/two_people_office.avi, 1920x1080, 87 frames; the test clip when that
is absent) is decoded and resized to the working size first (untimed), twice: as it is (a still camera) and
seen through a virtual camera that pans 10 degrees, tilts 5, rolls 3 and zooms 1.3x (each frame warped, as
``python -m training.evaluate_camera`` does). Timed: the grey conversion and the tracker (corner picking,
Lucas-Kanade, both RANSAC fits), with OpenCV held to one thread; then the same frames JPEG-coded into one
segment as the decoder stores it and followed by ``track_segment_camera`` (JPEG decoding included; no
people given, so nothing is masked). Prints the median over ``--repeat`` runs of the mean per frame, and the
decoder's JPEG coding of the same frames beside it for scale.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "proto")]

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from hpe3d.v1 import common_pb2  # noqa: E402
from services.decoder.camera_motion import BackgroundTracker  # noqa: E402
from services.decoder.segment_camera import track_segment_camera  # noqa: E402
from services.decoder.segments import JPEG_QUALITY, working_dimensions  # noqa: E402
from training.evaluate_camera import VirtualCamera, read_frames, warp_clip  # noqa: E402

CLIP = ROOT.parent / "shared" / "data" / "video" / "two_people_office.avi"
TEST_CLIP = ROOT / "tests" / "data" / "two_people_office_24f.mp4"


def per_frame_ms(frames: list[np.ndarray], repeat: int) -> float:
    """Median over ``repeat`` runs of the mean milliseconds per frame of grey conversion + tracker."""
    runs = []
    for _ in range(repeat):
        tracker = BackgroundTracker(frames[0].shape[1], frames[0].shape[0])
        began = time.perf_counter()
        for i, frame in enumerate(frames):
            tracker.add(i, cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        runs.append((time.perf_counter() - began) / len(frames) * 1e3)
    return float(np.median(runs))


def stage_ms(frames: list[np.ndarray], repeat: int) -> float:
    """The same for ``track_segment_camera`` on the frames stored as one JPEG segment."""
    h, w = frames[0].shape[:2]
    segment = common_pb2.FrameSegment(start_frame=0, width=w, height=h, source_width=w, source_height=h, jpeg=[
        cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1].tobytes() for f in frames])
    poses = common_pb2.Poses2D(start_frame=0, frame_count=len(frames))
    runs = []
    for _ in range(repeat):
        began = time.perf_counter()
        track_segment_camera(segment, poses)
        runs.append((time.perf_counter() - began) / len(frames) * 1e3)
    return float(np.median(runs))


def jpeg_ms(frames: list[np.ndarray]) -> float:
    began = time.perf_counter()
    for frame in frames:
        cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    return (time.perf_counter() - began) / len(frames) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=CLIP if CLIP.exists() else TEST_CLIP)
    parser.add_argument("--working-size", type=int, default=640)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    source, fps = read_frames(args.video)
    h, w = source[0].shape[:2]
    size = working_dimensions(w, h, args.working_size)
    still = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in source]
    camera = VirtualCamera.sequence(len(source), fps, 10.0, 5.0, 3.0, 1.3)
    moving = warp_clip(source, camera, 90.0, 57.5, size)
    print(f"{args.video.name}: {len(source)} frames at {size[0]}x{size[1]}, one thread, median of {args.repeat} runs")
    for name, frames in (("still camera", still), ("moving camera", moving)):
        print(f"  {name:14s} tracker {per_frame_ms(frames, args.repeat):5.2f} ms/frame, from the stored segment "
              f"{stage_ms(frames, args.repeat):5.2f} ms/frame (JPEG coding of the same frames: "
              f"{jpeg_ms(frames):5.2f} ms/frame)")


if __name__ == "__main__":
    main()
