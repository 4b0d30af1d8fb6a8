"""Per-stage and end-to-end frames per second of the whole local stack on one clip.

    .venv/bin/python bench/pipeline.py [VIDEO] [--max-persons N] [--size 1280x720]

Starts the local stack (SeaweedFS, Triton host, the four stages, the gateway), then
1. calls each stage directly over gRPC, one stage after the other, and prints its frames/s
   (decode and pose2d run segment by segment, as the gateway does, but sequentially);
2. submits the same clip through the REST gateway and prints end-to-end frames/s (upload to
   artefacts ready, stages overlapping as a job worker runs them) and the CPU the whole stack spent on the
   job per frame (user + system time of every process the stack runs, read from /proc before and after:
   on a 2-core machine this sum, not the overlap, sets the speed, and it moves far less with the load
   that other work puts on the machine than wall-clock figures do);
3. runs MediaPipe's own Pose on the same frames (``bench/mediapipe_anchor.py`` in ``.venv-mediapipe``,
   ``make mediapipe-venv``; ``--no-anchor`` skips it) and prints the end-to-end and pose2d ratios to it.
The default clip is ../shared/data/video/two_people_office.avi (1920x1080, 30 fps, 87 frames); ``--size``
first re-encodes the clip at that size (H.264, crf 20) into a temporary file and runs everything on that.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "proto")]

from hpe3d_cli.local_stack import LocalStack  # noqa: E402
from hpe3d.v1 import (decoder_pb2, decoder_pb2_grpc, lifter3d_pb2,  # noqa: E402
                      lifter3d_pb2_grpc, pose2d_pb2, pose2d_pb2_grpc, renderer_pb2,
                      renderer_pb2_grpc)
from services.common.grpc_server import channel  # noqa: E402
from services.common.job_scope import job_metadata  # noqa: E402
from services.common.storage import ObjectStore  # noqa: E402
from bench.clips import resized_copy  # noqa: E402
from bench.processes import descendants  # noqa: E402

DEFAULT_CLIP = ROOT.parent / "shared" / "data" / "video" / "two_people_office.avi"


def _drain(stream):
    result = None
    for update in stream:
        if update.HasField("result"):
            result = update.result
    return result


def bench_stages(stack: LocalStack, video: Path) -> dict[str, float]:
    s = stack.settings
    store = ObjectStore.from_settings(s)
    job = "bench-stages"
    video_ref = store.put_file(f"jobs/{job}/input/{video.name}", str(video))
    decoder = decoder_pb2_grpc.DecoderStub(channel(s.decoder_addr, s.stage_token))
    pose2d = pose2d_pb2_grpc.Pose2DStub(channel(s.pose2d_addr, s.stage_token))
    lifter = lifter3d_pb2_grpc.Lifter3DStub(channel(s.lifter3d_addr, s.stage_token))
    renderer = renderer_pb2_grpc.RendererStub(channel(s.renderer_addr, s.stage_token))
    timings: dict[str, float] = {}

    t = time.perf_counter()
    info = decoder.Probe(decoder_pb2.ProbeRequest(video=video_ref), metadata=job_metadata(job), timeout=300)
    timings["probe_s"] = time.perf_counter() - t
    frames = info.frame_count
    starts = range(0, frames, s.segment_frames)

    t = time.perf_counter()
    segments = [decoder.Decode(decoder_pb2.DecodeRequest(
        job_id=job, index=i, video=video_ref, start_frame=start,
        frame_count=min(s.segment_frames, frames - start), working_size=s.working_size,
        output=store.ref(f"jobs/{job}/segments/{i:05d}/frames.pb")), timeout=600)
        for i, start in enumerate(starts)]
    timings["decode"] = frames / (time.perf_counter() - t)

    t = time.perf_counter()
    poses = []
    for seg in segments:
        out = store.ref(f"jobs/{job}/segments/{seg.index:05d}/poses2d.pb")
        pose2d.Estimate(pose2d_pb2.EstimateRequest(segment=seg, output=out), timeout=600)
        poses.append(out)
    timings["pose2d"] = frames / (time.perf_counter() - t)

    t = time.perf_counter()
    out3d = store.ref(f"jobs/{job}/poses3d.pb")
    _drain(lifter.Lift(lifter3d_pb2.LiftRequest(job_id=job, width=info.width, height=info.height,
                                                segments=poses, output=out3d), timeout=600))
    timings["lift3d"] = frames / (time.perf_counter() - t)

    t = time.perf_counter()
    _drain(renderer.Render(renderer_pb2.RenderRequest(
        job_id=job, video=video_ref, video_info=info, poses2d=poses, poses3d=out3d,
        output_prefix=f"jobs/{job}/output/", bucket=store.bucket), timeout=600))
    timings["render"] = frames / (time.perf_counter() - t)
    timings["frames"] = frames
    return timings


def stack_cpu_s() -> float:
    """User + system CPU seconds used so far by every process below this one (the local stack)."""
    total = 0
    for pid in descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def bench_end_to_end(stack: LocalStack, video: Path, frames: int) -> tuple[float, float]:
    """(end-to-end frames/s, the stack's CPU ms per frame over that job)."""
    cpu = stack_cpu_s()
    with httpx.Client(base_url=stack.gateway_url, timeout=600,
                      headers={"Authorization": f"Bearer {stack.api_key}"}) as http:
        t = time.perf_counter()
        with open(video, "rb") as fh:
            job = http.post("/v1/jobs", files={"file": (video.name, fh, "video/mp4")}).json()
        while True:
            state = http.get(f"/v1/jobs/{job['id']}").json()
            if state["state"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.2)
        elapsed = time.perf_counter() - t
    cpu = stack_cpu_s() - cpu
    if state["state"] != "succeeded":
        raise SystemExit(f"end-to-end job ended {state['state']}: {state.get('error')}")
    return frames / elapsed, cpu / frames * 1e3


def _load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg()) + " (1, 5, 15 min)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", nargs="?", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--max-persons", type=int, default=0,
                        help="persons tracked per frame (default: HPE3D_MAX_PERSONS, 8)")
    parser.add_argument("--no-anchor", action="store_true", help="do not run MediaPipe's Pose for the ratio")
    parser.add_argument("--size", default="", help="re-encode the clip at WIDTHxHEIGHT first, e.g. 1280x720")
    args = parser.parse_args()
    if not args.video.exists():
        raise SystemExit(f"{args.video} not found: pass a 720p or 1080p clip")
    if args.size:
        width, height = (int(v) for v in args.size.lower().split("x"))
        scratch = tempfile.TemporaryDirectory(prefix="hpe3d-bench-")
        args.video = resized_copy(args.video, width, height, Path(scratch.name) / f"{args.video.stem}_{height}p.mp4")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, {platform.platform()}; "
          f"load average before: {_load_average()}")
    overrides = {"max_persons": args.max_persons} if args.max_persons else {}
    with LocalStack(settings_overrides=overrides) as stack:
        stages = bench_stages(stack, args.video)
        e2e, cpu_ms = bench_end_to_end(stack, args.video, int(stages["frames"]))
    print(f"clip: {args.video.name}, {int(stages['frames'])} frames, max_persons={stack.settings.max_persons}")
    for name in ("decode", "pose2d", "lift3d", "render"):
        print(f"{name:>10}: {stages[name]:7.1f} frames/s")
    print(f"{'end-to-end':>10}: {e2e:7.1f} frames/s (REST upload to artefacts ready); "
          f"{cpu_ms:.1f} ms of CPU per frame over all the stack's processes")
    print(f"load average after the stack's runs: {_load_average()} (other work on the machine slows every figure)")
    if not args.no_anchor:
        from bench.anchor import mediapipe_frames_per_s, print_ratio
        anchor = mediapipe_frames_per_s(args.video, frames=int(stages["frames"]))
        print_ratio("end-to-end", e2e, anchor)
        print_ratio("pose2d", stages["pose2d"], anchor)


if __name__ == "__main__":
    main()
