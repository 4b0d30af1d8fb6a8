"""Pose2D throughput: frames/s of ``Pose2D.Estimate`` through Triton on a 720p clip.

    .venv/bin/python bench/pose2d.py [--video PATH] [--size 1280x720] [--max-persons 1 | --all-persons]
                                     [--concurrency 1] [--repeat 3] [--modes grpc,direct,plain,local] [--parts]

The clip (default ../shared/data/video/two_people_office.avi, 1920x1080, 87 frames) is decoded and
resized to ``--size`` first, then turned into one FrameSegment as the decoder stores it (JPEG q90
at the 640 px working size, source size = ``--size``): none of that is timed. Timed, per mode:

* grpc    Estimate over gRPC to a real pose2d server process, reading the segment from SeaweedFS
          (S3), calling the Triton host and storing its result in S3 (a new key each call): what a job
          worker sees, S3 in and out.
* direct  the stage's code (``people.estimate_segment_people``: person detector, BlazePose landmarks,
          tracker) in this process against the same Triton host (no gRPC, no S3), tensors as the
          stage sends them (system shared memory with a server on this host, HPE3D_TRITON_SHARED_MEMORY).
* plain   ``direct`` with the tensors in the gRPC messages (no shared memory): what shared memory saves.
* local   the same with the models in this process (ONNX Runtime, LiteRT; no Triton): the floor.

``--all-persons`` follows every person of the clip (``max_persons`` 16, the limit); the default
follows one. The output line says how many persons were followed per frame on average.

With ``--concurrency N`` N segments run at once (a job worker keeps several in flight; Triton's
dynamic batcher merges their requests). Prints frames/s per mode (best of ``--repeat``) and the CPU
time per frame of every process involved (this one, the pose2d server, the Triton host with its
tritonserver and backend stubs), a figure that other load on the machine disturbs less.
Then runs MediaPipe's own Pose on the same frames (``bench/mediapipe_anchor.py`` in ``.venv-mediapipe``,
``make mediapipe-venv``; ``--no-anchor`` skips it) and prints each mode's ratio to it.
``--parts`` also prints, after the ``direct`` mode, where a segment's wall time goes in the stage's
code (``bench/pose2d_parts.py``: per thread, the landmark and detector model calls, crops, landmark
decoding, tracker, waits for the detector, JPEG decoding). Skips with a message when the clip is absent.
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "proto")]

import av  # noqa: E402
import cv2  # noqa: E402

from hpe3d.v1 import common_pb2  # noqa: E402

CLIP = ROOT.parent / "shared" / "data" / "video" / "two_people_office.avi"


def make_segment(video: str, size: tuple[int, int], working: int, frames: int) -> common_pb2.FrameSegment:
    """Decode, resize to ``size`` (the '720p clip'), then JPEG at the working size, as the decoder does."""
    w, h = size
    scale = working / max(w, h)
    ww, wh = round(w * scale / 2) * 2, round(h * scale / 2) * 2
    seg = common_pb2.FrameSegment(start_frame=0, width=ww, height=wh, source_width=w, source_height=h)
    with av.open(video) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= frames:
                break
            image = cv2.resize(frame.to_ndarray(format="bgr24"), (w, h), interpolation=cv2.INTER_AREA)
            small = cv2.resize(image, (ww, wh), interpolation=cv2.INTER_AREA)
            seg.jpeg.append(cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
            seg.timestamps_s.append(i / 30)
    return seg


def cpu_seconds(roots: list[int]) -> float:
    """User + system CPU time of the processes ``roots`` and all their descendants (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    parent, used = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry)] = int(fields[1])
        used[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    total = 0.0
    for pid in used:
        p = pid
        while p > 1 and p not in roots:
            p = parent.get(p, 0)
        if p in roots:
            total += used[pid]
    return total


def timed(run, segments: int, concurrency: int, repeat: int, roots: list[int]) -> tuple[float, float]:
    """Best wall time of running ``run()`` ``segments`` times with ``concurrency`` in flight, and
    the CPU time all processes of ``roots`` spent during that run."""
    best = (float("inf"), 0.0)
    for _ in range(repeat):
        cpu = cpu_seconds(roots)
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(lambda _: run(), range(segments)))
        wall = time.perf_counter() - started
        best = min(best, (wall, cpu_seconds(roots) - cpu))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(CLIP))
    parser.add_argument("--size", default="1280x720", help="resize the clip to this first (the source size)")
    parser.add_argument("--working-size", type=int, default=640, help="long side of the segment's JPEGs")
    parser.add_argument("--frames", type=int, default=128)
    parser.add_argument("--max-persons", type=int, default=1)
    parser.add_argument("--all-persons", action="store_true", help="every person of the clip (max_persons 16)")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", default="grpc,direct,plain,local")
    parser.add_argument("--no-heatmap", action="store_true", help="skip the heatmap refinement (less data)")
    parser.add_argument("--no-anchor", action="store_true", help="do not run MediaPipe's Pose for the ratio")
    parser.add_argument("--parts", action="store_true", help="where the time goes (direct mode, one timed run)")
    args = parser.parse_args()
    if not Path(args.video).exists():
        print(f"skipped: {args.video} is not present (development data beside the checkout)")
        return
    from services.triton.repositories import REPOSITORY_DIR, missing_model_files
    if missing_model_files():
        print(f"skipped: {missing_model_files()[0]} is missing; run `make models`")
        return
    if not (REPOSITORY_DIR / "person_detector" / "1" / "model.onnx").is_file():
        print("skipped: the person detector's model.onnx is missing; run `make detector`")
        return
    if args.all_persons:
        from services.common.request_options import MAX_PERSONS_LIMIT
        args.max_persons = MAX_PERSONS_LIMIT
    size = tuple(int(v) for v in args.size.lower().split("x"))
    segment = make_segment(args.video, size, args.working_size, args.frames)
    frames = len(segment.jpeg)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    load = os.getloadavg()
    print(f"pose2d bench: {frames} frames of {size[0]}x{size[1]} as {segment.width}x{segment.height} JPEGs, "
          f"max_persons={args.max_persons}, concurrency={args.concurrency}, heatmap={not args.no_heatmap}, "
          f"{os.cpu_count()} CPUs, load average {load[0]:.2f} at start", flush=True)

    from services.pose2d.keypoint_followers import BlazePoseFollower
    from services.pose2d.people import PeopleOptions, estimate_segment_people
    options = PeopleOptions(max_persons=args.max_persons)
    warm = common_pb2.FrameSegment(start_frame=0, width=segment.width, height=segment.height, jpeg=segment.jpeg[:2])
    results, persons = {}, {}

    def estimate(detector, blazepose):
        poses = estimate_segment_people(segment, detector, BlazePoseFollower(blazepose, not args.no_heatmap), options)
        return sum(len(f.persons) for f in poses.frames)

    if "local" in modes:
        from bench.local_models import LocalBlazePose, LocalPersonDetector
        local, local_detector = LocalBlazePose(), LocalPersonDetector()
        estimate_segment_people(warm, local_detector, BlazePoseFollower(local), options)
        persons["local"] = estimate(local_detector, local)
        results["local"] = timed(lambda: estimate(local_detector, local), args.concurrency,
                                 args.concurrency, args.repeat, [os.getpid()])
    if {"grpc", "direct", "plain"} & set(modes):
        from hpe3d_cli.local_stack import LocalStack
        components = ("s3", "triton", "pose2d") if "grpc" in modes else ("triton",)
        started = time.perf_counter()
        with LocalStack(components=components) as stack:
            print(f"stack ({', '.join(components)}) ready in {time.perf_counter() - started:.1f}s", flush=True)
            serving = [c.process.pid for c in stack.running if c.name in ("triton", "pose2d")]
            from services.pose2d.client import TritonBlazePose
            from services.pose2d.person_detector import TritonPersonDetector
            for mode, shared_memory in (("direct", None), ("plain", "off")):   # None: as the stage decides
                if mode not in modes:
                    continue
                url = stack.settings.triton_url
                triton = TritonBlazePose(url, shared_memory=shared_memory)
                detector = TritonPersonDetector(url, shared_memory=shared_memory)
                estimate_segment_people(warm, detector, BlazePoseFollower(triton), options)
                persons[mode] = estimate(detector, triton)
                results[mode] = timed(lambda: estimate(detector, triton), args.concurrency,
                                      args.concurrency, args.repeat, [os.getpid()] + serving)
                if args.parts and mode == "direct":
                    from bench.pose2d_parts import print_parts
                    print_parts(segment, detector, triton, options, not args.no_heatmap)
                print(f"  ({mode}: tensors {'in shared memory' if triton.tensors.shared_memory else 'in the gRPC messages'})",
                      flush=True)
                triton.close()
                detector.close()
            if "grpc" in modes:
                from hpe3d.v1 import pose2d_pb2, pose2d_pb2_grpc
                from services.common.grpc_server import channel
                from services.common.storage import ObjectStore
                store = ObjectStore.from_settings(stack.settings)
                ref = store.put_message("jobs/bench/segments/00000/frames.pb", segment)  # a stage call stays in its job
                calls = itertools.count()

                def request() -> pose2d_pb2.EstimateRequest:  # a new output each call: computed, then stored
                    return pose2d_pb2.EstimateRequest(
                        segment=common_pb2.SegmentRef(job_id="bench", frames=ref, frame_count=frames),
                        output=store.ref(f"jobs/bench/poses2d/{next(calls):05d}.pb"), max_persons=args.max_persons)
                with channel(stack.settings.pose2d_addr, stack.settings.stage_token) as ch:
                    stub = pose2d_pb2_grpc.Pose2DStub(ch)
                    reply = stub.Estimate(request(), timeout=600)  # warm-up (connections, first segment)
                    persons["grpc"] = sum(len(f.persons) for f in reply.poses.frames)
                    results["grpc"] = timed(lambda: stub.Estimate(request(), timeout=600), args.concurrency,
                                            args.concurrency, args.repeat, [os.getpid()] + serving)
    total = frames * args.concurrency
    for mode in ("grpc", "direct", "plain", "local"):
        if mode in results:
            wall, cpu = results[mode]
            print(f"  {mode:6s} {total / wall:6.1f} frames/s  ({wall * 1000 / total:.1f} ms/frame wall, "
                  f"{cpu * 1000 / total:.1f} ms/frame CPU over all its processes; "
                  f"{persons[mode] / frames:.2f} persons per frame)")
    if not args.no_anchor:
        from bench.anchor import mediapipe_frames_per_s, print_ratio
        anchor = mediapipe_frames_per_s(args.video, size, frames, args.repeat)
        for mode in ("grpc", "direct", "plain", "local"):
            if mode in results:
                print_ratio(mode, total / results[mode][0], anchor)
    print(f"load average {os.getloadavg()[0]:.2f} at the end (other work on this machine slows the wall-clock figures)")


if __name__ == "__main__":
    main()
