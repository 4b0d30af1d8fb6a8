"""Renderer cost: frames/s of ``render_video``, where its CPU goes, and the H.264 settings measured.

    .venv/bin/python bench/renderer.py [--video PATH] [--size 1280x720] [--repeat N]   frames/s, CPU ms/frame
    .venv/bin/python bench/renderer.py --parts                           CPU ms per frame of each part
    .venv/bin/python bench/renderer.py --encoder-settings                preset / crf / threads table
    .venv/bin/python bench/renderer.py --stored-frames                   decoding again vs stored JPEG frames

Two standing skeletons are drawn on every frame (2D and 3D), as in a real job. CPU time is the process's
(all threads), the figure that limits a 2-core machine; wall time is printed beside it. The default clip is
../shared/data/video/two_people_office.avi (1080p); the bench skips with a message when it is absent.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "proto")]

from hpe3d.v1 import common_pb2  # noqa: E402
from services.common.arrays import to_proto  # noqa: E402
from bench.clips import resized_copy  # noqa: E402
from services.decoder.probe import probe_video  # noqa: E402
from services.renderer.draw import draw_skeleton_2d  # noqa: E402
from services.renderer.pose_data import PoseTimeline  # noqa: E402
from services.renderer.video import (ENCODER, EncoderSettings, _upright_frames, build_view,  # noqa: E402
                                     compose_into, open_encoder, output_layout, render_video, yuv420)

CLIP = ROOT.parent / "shared" / "data" / "video" / "two_people_office.avi"
PRESETS = ("ultrafast", "superfast", "veryfast")
CRFS = (23, 26)
THREADS = (0, 1, 2)


def standing_pose(x: float, z: float) -> np.ndarray:
    """A standing Human3.6M-17 pose [17, 3], metres, feet on y = 0."""
    pose = np.array([[0, .95, 0], [-.12, .95, 0], [-.12, .5, 0], [-.12, .05, 0], [.12, .95, 0], [.12, .5, 0],
                     [.12, .05, 0], [0, 1.2, 0], [0, 1.45, 0], [0, 1.55, .05], [0, 1.72, 0], [.18, 1.42, 0],
                     [.2, 1.15, 0], [.2, .9, 0], [-.18, 1.42, 0], [-.2, 1.15, 0], [-.2, .9, 0]], np.float32)
    return pose + np.array([x, 0, z], np.float32)


def synthetic_timeline(info: common_pb2.VideoInfo) -> PoseTimeline:
    """Two people walking slowly across the floor (so the panel's camera and trails move), in 2D and 3D."""
    n = info.frame_count
    tracks = []
    for track_id, (x, z) in enumerate(((-0.6, 3.0), (0.7, 4.0))):
        walk = np.linspace(0, 1.5, n, dtype=np.float32)[:, None, None] * np.array([1, 0, 0.3], np.float32)
        grounded = standing_pose(x, z)[None] + walk
        kp = np.zeros((n, 17, 3), np.float32)
        kp[..., 0] = info.width * (0.4 + 0.2 * track_id) + np.linspace(-60, 60, 17)
        kp[..., 1] = info.height * np.linspace(0.2, 0.9, 17)
        kp[..., 2] = 0.9
        tracks.append(common_pb2.Track3D(track_id=track_id, first_frame=0, frame_count=n,
                                         root_relative=to_proto(grounded - grounded[:, :1]),
                                         grounded=to_proto(grounded), world=to_proto(grounded),
                                         keypoints2d=to_proto(kp)))
    return PoseTimeline([], common_pb2.Poses3D(tracks=tracks))


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _per_frame_ms(start: tuple[float, float], frames: int) -> tuple[float, float]:
    wall, cpu = _clock()
    return (wall - start[0]) / frames * 1e3, (cpu - start[1]) / frames * 1e3


def bench_throughput(video: str, info, timeline, repeat: int) -> None:
    best = None
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            start = _clock()
            for _ in render_video(video, info, timeline, f"{tmp}/render.mp4"):
                pass
            wall, cpu = _per_frame_ms(start, info.frame_count)
            if best is None or wall < best[0]:
                best = (wall, cpu, os.path.getsize(f"{tmp}/render.mp4"))
    wall, cpu, size = best
    print(f"render_video: {1e3 / wall:.1f} frames/s, {cpu:.1f} ms CPU per frame (best of {repeat}), "
          f"{size / 1024:.0f} KiB, {ENCODER}")


def bench_parts(video: str, info, timeline) -> None:
    """CPU ms per frame of each part of the render loop, each timed alone in the order the loop runs them."""
    width, height, panel = output_layout(info.width, info.height)
    scale = height / info.height
    view = build_view(info, timeline, panel)
    canvas = np.empty((height, width + panel, 3), np.uint8)
    parts = dict.fromkeys(("decode + scale to BGR", "2D skeletons", "3D panel", "BGR -> YUV 4:2:0", "H.264 encode"),
                          0.0)
    frames_iter = _upright_frames(video, width, height)
    with tempfile.TemporaryDirectory() as tmp, av.open(f"{tmp}/r.mp4", "w") as out:
        encoder = open_encoder(out, Fraction(30), width + panel, height)
        n = 0
        while True:
            t = time.process_time()
            frame = next(frames_iter, None)
            parts["decode + scale to BGR"] += time.process_time() - t
            if frame is None or n >= info.frame_count:
                break
            canvas[:, :width] = frame
            t = time.process_time()
            for p in timeline.persons(n):
                draw_skeleton_2d(canvas[:, :width], p.keypoints_2d, p.track_id, scale)
            parts["2D skeletons"] += time.process_time() - t
            t = time.process_time()
            persons = timeline.persons(n)
            view.render(n, [(p.track_id, p.world) for p in persons], timeline.pelvis_trails(n, view.trail_frames),
                        out=canvas[:, width:])
            parts["3D panel"] += time.process_time() - t
            t = time.process_time()
            planes = yuv420(canvas)
            parts["BGR -> YUV 4:2:0"] += time.process_time() - t
            t = time.process_time()
            frame_out = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            frame_out.pts = n
            for packet in encoder.encode(frame_out):
                out.mux(packet)
            parts["H.264 encode"] += time.process_time() - t
            n += 1
        t = time.process_time()
        for packet in encoder.encode():
            out.mux(packet)
        parts["H.264 encode"] += time.process_time() - t
    print(f"CPU ms per frame, {n} frames, output {width + panel}x{height}:")
    for name, seconds in parts.items():
        print(f"  {name:<22} {seconds / n * 1e3:6.2f}")
    print(f"  {'total':<22} {sum(parts.values()) / n * 1e3:6.2f}")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def bench_encoder_settings(video: str, info, timeline) -> None:
    """Encode the same composed pictures with each setting: CPU and wall ms per frame, size, luma PSNR."""
    width, height, panel = output_layout(info.width, info.height)
    view = build_view(info, timeline, panel)
    canvas = np.empty((height, width + panel, 3), np.uint8)
    pictures = []
    for n, frame in enumerate(_upright_frames(video, width, height)):
        if n >= info.frame_count:
            break
        canvas[:, :width] = frame
        pictures.append(yuv420(compose_into(canvas, width, n, timeline, view, height / info.height)))
    print(f"{len(pictures)} composed frames of {width + panel}x{height}; chosen: {ENCODER}")
    print(f"{'preset':<10} {'crf':>3} {'threads':>7} {'CPU ms/f':>8} {'wall ms/f':>9} {'KiB':>7} {'Y PSNR dB':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for preset in PRESETS:
            for crf in CRFS:
                for threads in THREADS:
                    path = f"{tmp}/{preset}_{crf}_{threads}.mp4"
                    start = _clock()
                    with av.open(path, "w") as out:
                        encoder = open_encoder(out, Fraction(30), width + panel, height,
                                               EncoderSettings(preset, crf, threads))
                        for n, planes in enumerate(pictures):
                            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
                            frame.pts = n
                            for packet in encoder.encode(frame):
                                out.mux(packet)
                        for packet in encoder.encode():
                            out.mux(packet)
                    wall, cpu = _per_frame_ms(start, len(pictures))
                    with av.open(path) as c:
                        decoded = [f.to_ndarray(format="yuv420p")[:height] for f in c.decode(video=0)]
                    psnr = np.mean([_psnr(d, p[:height]) for d, p in zip(decoded, pictures)])
                    print(f"{preset:<10} {crf:>3} {threads or 'auto':>7} {cpu:8.2f} {wall:9.2f} "
                          f"{os.path.getsize(path) / 1024:7.0f} {psnr:9.2f}")


def bench_stored_frames(video: str, info) -> None:
    """CPU ms per frame of what the render does now to get its frames (decode the original, scale, BGR) against
    what reading them from storage would cost (JPEG, quality 90, at the render's frame size: encode once in the
    decoder, decode in the renderer)."""
    import cv2
    width, height, _ = output_layout(info.width, info.height)
    t = time.process_time()
    frames = list(_upright_frames(video, width, height))
    decode = (time.process_time() - t) / len(frames) * 1e3
    t = time.process_time()
    jpegs = [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1] for f in frames]
    encode_jpeg = (time.process_time() - t) / len(frames) * 1e3
    t = time.process_time()
    for j in jpegs:
        cv2.imdecode(j, cv2.IMREAD_COLOR)
    decode_jpeg = (time.process_time() - t) / len(frames) * 1e3
    print(f"{width}x{height} frames, CPU ms per frame: decoding the original to BGR {decode:.2f}; stored as JPEG "
          f"instead: encode {encode_jpeg:.2f} + decode {decode_jpeg:.2f} = {encode_jpeg + decode_jpeg:.2f} "
          f"({np.mean([len(j) for j in jpegs]) / 1024:.0f} KiB per frame)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", default=str(CLIP))
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--parts", action="store_true", help="CPU ms per frame of each part of the render loop")
    parser.add_argument("--encoder-settings", action="store_true", help="preset / crf / threads table")
    parser.add_argument("--stored-frames", action="store_true", help="decoding again vs stored JPEG frames")
    parser.add_argument("--size", default="", help="re-encode the clip at WIDTHxHEIGHT first, e.g. 1280x720")
    args = parser.parse_args()
    if not Path(args.video).exists():
        print(f"skipped: {args.video} is not present (development data beside the checkout)")
        return
    if args.size:
        width, height = (int(v) for v in args.size.lower().split("x"))
        scratch = tempfile.TemporaryDirectory(prefix="hpe3d-bench-")
        args.video = str(resized_copy(Path(args.video), width, height, Path(scratch.name) / f"clip_{height}p.mp4"))
    info = probe_video(args.video).to_proto()
    timeline = synthetic_timeline(info)
    print(f"clip: {Path(args.video).name}, {info.width}x{info.height} {info.codec}, {info.frame_count} frames; "
          f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.2f} (other work on the machine "
          "slows these figures)")
    if args.parts:
        bench_parts(args.video, info, timeline)
    elif args.stored_frames:
        bench_stored_frames(args.video, info)
    elif args.encoder_settings:
        bench_encoder_settings(args.video, info, timeline)
    else:
        bench_throughput(args.video, info, timeline, args.repeat)


if __name__ == "__main__":
    main()
