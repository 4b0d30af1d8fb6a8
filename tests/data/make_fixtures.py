"""Regenerate the decoder/renderer video fixtures of ``tests/data/`` from ``../shared/data``.

Run from the repository root::

    .venv/bin/python tests/data/make_fixtures.py            # writes only missing files
    .venv/bin/python tests/data/make_fixtures.py --force    # rewrites all of them

Source: ``../shared/data/video/two_people_office.avi`` (GAST-Net repository ``data/video/apart.avi``,
MIT licence), 1920x1080, 30 fps, 87 frames. Every fixture is H.264 (libx264, yuv420p) written with
PyAV, each well under 1 MB:

* ``two_people_office_24f.mp4``  frames 30..53 (both people in view), scaled to 640x360, GOP 12.
* ``two_people_office_24f_rot90.mp4``  the same frames stored turned 90 degrees clockwise (360x640)
  with a display matrix that turns them back: a player (and the decoder) shows 640x360 upright.
* ``vfr_12f.mp4``  12 frames of the clip at 320x180 with irregular presentation times (ms):
  0, 33, 67, 150, 183, 300, 333, 367, 500, 533, 700, 733 (time base 1/1000).
* ``nobody_24f.mp4``  frames 0..23, the 640x360 top-right corner of the office (ceiling, window):
  nobody stands there.
* ``truncated.mp4``  the 87-frame clip at 320x180 (moov atom first, ``+faststart``) cut to the first
  half of its bytes: the first part of the frames is decodable, the rest is missing.
* ``not_a_video.mp4``  a text file with a video name; ``empty.mp4``  0 bytes.
"""
from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent.parent.parent / "shared" / "data" / "video" / "two_people_office.avi"

VFR_TIMES_MS = (0, 33, 67, 150, 183, 300, 333, 367, 500, 533, 700, 733)


def read_source_frames(path: Path) -> list[np.ndarray]:
    """All frames of the source clip as BGR uint8 arrays [H, W, 3]."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


def write_h264(path: Path, frames: list[np.ndarray], fps: int = 30, pts: list[int] | None = None,
               time_base: Fraction | None = None, rotation_ccw: int = 0, gop: int = 12,
               faststart: bool = False) -> None:
    """Encode BGR frames as H.264 MP4. ``pts`` (in ``time_base`` units) gives irregular timing;
    ``rotation_ccw`` writes a display matrix (counter-clockwise degrees, PyAV's convention)."""
    height, width = frames[0].shape[:2]
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "26", "preset": "veryfast", "g": str(gop), "bf": "0"}
        if time_base is not None:
            stream.codec_context.time_base = time_base
            stream.time_base = time_base
        if rotation_ccw:
            stream.set_display_rotation(rotation_ccw)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            if pts is not None:
                frame.pts = pts[i]
                frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def scaled(frames: list[np.ndarray], width: int, height: int) -> list[np.ndarray]:
    return [cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames]


def make_all(force: bool) -> None:
    if not SOURCE.exists():
        sys.exit(f"{SOURCE} is missing: the fixtures are built from the shared development data")
    frames = read_source_frames(SOURCE)

    def wanted(name: str) -> Path | None:
        path = HERE / name
        if path.exists() and not force:
            print(f"keep   {name} (exists)")
            return None
        print(f"write  {name}")
        return path

    people = scaled(frames[30:54], 640, 360)
    if path := wanted("two_people_office_24f.mp4"):
        write_h264(path, people)
    if path := wanted("two_people_office_24f_rot90.mp4"):
        stored = [cv2.rotate(f, cv2.ROTATE_90_CLOCKWISE) for f in people]
        write_h264(path, stored, rotation_ccw=90)
    if path := wanted("vfr_12f.mp4"):
        write_h264(path, scaled(frames[30:42], 320, 180), pts=list(VFR_TIMES_MS),
                   time_base=Fraction(1, 1000))
    if path := wanted("nobody_24f.mp4"):
        write_h264(path, [f[0:360, 1280:1920].copy() for f in frames[0:24]])
    if path := wanted("truncated.mp4"):
        whole = HERE / "_whole.mp4"
        write_h264(whole, scaled(frames, 320, 180), faststart=True)
        data = whole.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        whole.unlink()
    if path := wanted("not_a_video.mp4"):
        path.write_text("This is a text file with a video's name; it holds no video stream.\n")
    if path := wanted("empty.mp4"):
        path.write_bytes(b"")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true", help="rewrite fixtures that already exist")
    make_all(parser.parse_args().force)
