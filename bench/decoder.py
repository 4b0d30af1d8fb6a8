"""Decoder throughput: frames/s of ``probe_video`` + ``decode_segment`` (128-frame segments, JPEG
at the 640 px working size) on the 1080p development clip.

    .venv/bin/python bench/decoder.py [--video PATH] [--working-size 640] [--segment 128]

Skips with a message when ../shared/data/video/two_people_office.avi is absent.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "proto")]

from services.decoder.probe import _probe_cached, probe_video  # noqa: E402
from services.decoder.segments import decode_segment  # noqa: E402

CLIP = ROOT.parent / "shared" / "data" / "video" / "two_people_office.avi"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--video", default=str(CLIP))
    parser.add_argument("--working-size", type=int, default=640)
    parser.add_argument("--segment", type=int, default=128, help="frames per segment (HPE3D_SEGMENT_FRAMES's default)")
    args = parser.parse_args()
    if not Path(args.video).exists():
        print(f"skipped: {args.video} is not present (development data beside the checkout)")
        return
    _probe_cached.cache_clear()
    started = time.perf_counter()
    info = probe_video(args.video)
    probe_s = time.perf_counter() - started
    started = time.perf_counter()
    for start in range(0, info.frame_count, args.segment):
        decode_segment(args.video, start, args.segment, args.working_size)
    decode_s = time.perf_counter() - started
    print(f"decoder: {info.width}x{info.height} {info.codec}, {info.frame_count} frames; probe {probe_s * 1000:.0f} ms; "
          f"decode+resize+JPEG in {args.segment}-frame segments: {info.frame_count / decode_s:.1f} frames/s; "
          f"load average {os.getloadavg()[0]:.2f} (2 cores here; other work slows these figures)")


if __name__ == "__main__":
    main()
