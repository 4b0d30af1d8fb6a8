"""Latency and throughput of the live path (/v1/live) with frames sent at a camera's rate.

    .venv/bin/python bench/live.py [VIDEO] [--fps 30] [--seconds 20] [--max-persons 1] [--url URL]

Starts the local stack (or uses the gateway at ``--url``), opens a WebSocket to ``/v1/live`` and sends
the clip's frames (looped, resized to 640 px on the longer side, JPEG quality 80, as the web page
sends a camera's) at ``--fps`` for ``--seconds``, never waiting for answers, as a camera does. Prints
the latency from a frame sent to its 3D received (p50, p95, max), the frames per second answered, the
frames the server dropped (it answers the newest frame and drops the ones that waited), the server's
own per-frame times, and the machine with its load average (other work on the machine shows up in
every figure). The first ``--warmup`` seconds (Triton and the models warming up) are not counted.
The default clip is ../shared/data/video/two_people_office.avi (1920x1080, 30 fps, 87 frames, two people).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import struct
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "proto")]

from hpe3d_cli.local_stack import LocalStack  # noqa: E402

DEFAULT_CLIP = ROOT.parent / "shared" / "data" / "video" / "two_people_office.avi"
FALLBACK_CLIP = ROOT / "tests" / "data" / "two_people_office_24f.mp4"
MAX_SIDE = 640


def clip_jpegs(video: Path, max_side: int = MAX_SIDE, quality: int = 80) -> list[bytes]:
    out = []
    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            image = frame.to_ndarray(format="bgr24")
            scale = min(1.0, max_side / max(image.shape[:2]))
            if scale < 1:
                image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                                   interpolation=cv2.INTER_AREA)
            out.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes())
    return out


def run_session(url: str, jpegs: list[bytes], fps: float, seconds: float, max_persons: int,
                api_key: str = "") -> tuple[list, list, dict]:
    """Send frames at ``fps`` for ``seconds``, signed in with ``api_key`` (a header, never the URL); returns
    (sent [(index, ms)], answers [(message, arrival ms)], the last frame message)."""
    from websockets.sync.client import connect

    ws_url = url.replace("http://", "ws://").replace("https://", "wss://") + f"/v1/live?max_persons={max_persons}"
    sent: list[tuple[int, float]] = []
    answers: list[tuple[dict, float]] = []
    headers = {"X-API-Key": api_key} if api_key else None
    with connect(ws_url, max_size=None, open_timeout=60, additional_headers=headers) as ws:
        ready = json.loads(ws.recv(timeout=60))
        assert ready["type"] == "ready", ready
        done = threading.Event()

        def receive() -> None:
            while True:
                try:
                    message = json.loads(ws.recv(timeout=0.5))
                except TimeoutError:
                    if done.is_set():
                        return
                    continue
                if message["type"] == "frame":
                    answers.append((message, time.perf_counter() * 1000))
                    if done.is_set() and message["frame"] == sent[-1][0]:
                        return
                elif message["type"] == "error":
                    print(f"server: {message['detail']}", file=sys.stderr)

        receiver = threading.Thread(target=receive, daemon=True)
        receiver.start()
        start = time.perf_counter()
        count = int(seconds * fps)
        for i in range(count):
            due = start + i / fps
            time.sleep(max(0.0, due - time.perf_counter()))
            now_ms = time.perf_counter() * 1000
            ws.send(struct.pack("<d", now_ms) + jpegs[i % len(jpegs)])
            sent.append((i, now_ms))
        done.set()
        receiver.join(timeout=30)
    return sent, answers, answers[-1][0] if answers else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("video", nargs="?", type=Path, default=DEFAULT_CLIP if DEFAULT_CLIP.exists() else FALLBACK_CLIP)
    parser.add_argument("--fps", type=float, default=30.0, help="camera rate the frames are sent at")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to send")
    parser.add_argument("--warmup", type=float, default=3.0, help="first seconds not counted")
    parser.add_argument("--max-persons", type=int, default=1)
    parser.add_argument("--url", help="a running gateway (default: start the local stack)")
    parser.add_argument("--key", default=os.environ.get("HPE3D_API_KEY", ""),
                        help="API key for --url (default: HPE3D_API_KEY; the local stack makes its own)")
    args = parser.parse_args()

    jpegs = clip_jpegs(args.video)
    load_before = os.getloadavg()
    with ExitStack() as stack:
        url, key = args.url, args.key
        if not url:
            local = stack.enter_context(LocalStack(startup_timeout_s=240))
            url, key = local.gateway_url, local.api_key
        sent, answers, last = run_session(url, jpegs, args.fps, args.seconds, args.max_persons, key)
    load_after = os.getloadavg()

    sent_at = dict(sent)
    first_ms = sent[0][1]
    counted = [(m, t) for m, t in answers if sent_at[m["frame"]] - first_ms >= args.warmup * 1000]
    latencies = np.array([t - sent_at[m["frame"]] for m, t in counted])
    span_s = (counted[-1][1] - counted[0][1]) / 1000 if len(counted) > 1 else 0.0
    sent_counted = sum(1 for _, t in sent if t - first_ms >= args.warmup * 1000)
    server = {k: np.median([m["timings_ms"][k] for m, _ in counted]) for k in ("pose2d", "lift3d", "server")}
    persons = np.mean([len(m["persons"]) for m, _ in counted]) if counted else 0.0

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, {platform.platform()}; load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after (1 min)")
    print(f"clip: {args.video.name}, {len(jpegs)} frames looped, {jpegs and len(jpegs[0]) // 1024} KiB per JPEG, "
          f"max_persons={args.max_persons}, persons per answer {persons:.2f}")
    print(f"sent: {len(sent)} frames at {args.fps:g} frames/s for {args.seconds:g} s; counted after {args.warmup:g} s: "
          f"{sent_counted} sent, {len(counted)} answered")
    if len(latencies):
        print(f"latency, frame sent to 3D received: p50 {np.percentile(latencies, 50):.0f} ms, "
              f"p95 {np.percentile(latencies, 95):.0f} ms, max {latencies.max():.0f} ms")
    print(f"answered: {(len(counted) - 1) / span_s if span_s else 0:.1f} frames/s; dropped by the server: "
          f"{last.get('dropped', 0)} of {last.get('received', 0)} received (whole session)")
    print(f"server per frame (median): pose2d {server['pose2d']:.1f} ms, lift3d {server['lift3d']:.1f} ms, "
          f"receipt to answer {server['server']:.1f} ms")


if __name__ == "__main__":
    main()
