"""MediaPipe's own Pose solution on a clip: the speed anchor the other benchmarks compare against.

    .venv-mediapipe/bin/python bench/mediapipe_anchor.py VIDEO [--size 1280x720] [--frames 128] [--repeat 3] [--json]

Runs in its own virtual environment (``make mediapipe-venv``): mediapipe 0.10.21 pins protobuf < 5 and
cannot share the project's environment. The clip is decoded (and resized to ``--size`` when given) before
timing; timed is ``mediapipe.solutions.pose.Pose.process`` on every frame in video mode (detector on the
first frame, then landmark tracking), with the full landmark model (``model_complexity=1``, the same
``pose_landmark_full`` the project serves): single-person 2D, no decoding, no storage, in this process.
Prints frames/s (best of ``--repeat``); ``--json`` prints one JSON object instead, which
``bench/anchor.py`` reads when ``bench/pose2d.py`` and ``bench/pipeline.py`` print their ratio to it.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import av
import cv2
import mediapipe as mp


def read_frames(video: str, size: tuple[int, int] | None, limit: int) -> list:
    """RGB frames of ``video`` (at most ``limit``; 0 = all), resized to ``size`` when given."""
    frames = []
    with av.open(video) as container:
        for frame in container.decode(video=0):
            if limit and len(frames) >= limit:
                break
            image = frame.to_ndarray(format="rgb24")
            if size and (image.shape[1], image.shape[0]) != size:
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            frames.append(image)
    return frames


def run_once(frames: list) -> tuple[float, int]:
    """Seconds to run Pose over ``frames`` in order, and the frames where it found a person."""
    found = 0
    with mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1) as pose:
        pose.process(frames[0])  # graph start-up and the first detection are not part of the rate
        started = time.perf_counter()
        for image in frames:
            found += pose.process(image).pose_landmarks is not None
        return time.perf_counter() - started, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video")
    parser.add_argument("--size", default="", help="resize every frame to WIDTHxHEIGHT first (as the other benches do)")
    parser.add_argument("--frames", type=int, default=0, help="use at most this many frames (0 = all)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x")) if args.size else None
    frames = read_frames(args.video, size, args.frames)
    if not frames:
        raise SystemExit(f"{args.video}: no frames decoded")
    best, found = min(run_once(frames) for _ in range(args.repeat))
    result = {"frames": len(frames), "width": frames[0].shape[1], "height": frames[0].shape[0],
              "frames_per_s": len(frames) / best, "frames_with_person": found, "mediapipe": mp.__version__,
              "cpus": os.cpu_count()}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"MediaPipe Pose {mp.__version__} (full landmark model, video mode), {result['frames']} frames of "
              f"{result['width']}x{result['height']}: {result['frames_per_s']:.1f} frames/s "
              f"(person found in {found}), {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
