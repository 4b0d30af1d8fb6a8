"""Video and photo fixtures the tests make themselves (PyAV only, no ffmpeg binary).

* ``encode_h264``: BGR frames -> H.264 MP4 with B-frames (libx264's default reordering), a fixed
  keyframe interval, optionally an open group of pictures or the index (moov) first.
* ``cut_copy``: what a phone's trim or ``ffmpeg -ss T -i in.mp4 -c copy out.mp4`` makes: packets
  copied from the keyframe before ``T`` (no re-encoding), timestamps shifted so that ``T`` is 0,
  and the MP4 edit list that hides the packets before it.
* ``cut_at_packet``: a careless cut: packets copied from an arbitrary packet (possibly not a
  keyframe), without an edit list.
* ``truncate``: the first part of a file's bytes (an interrupted recording or upload).
* ``jpeg_with_orientation``: a JPEG carrying an EXIF orientation tag, as phones write them.
"""
from __future__ import annotations

import struct
from pathlib import Path

import av
import cv2
import numpy as np

DATA = Path(__file__).resolve().parent / "data"
PEOPLE_CLIP = DATA / "two_people_office_24f.mp4"


def read_frames(path: Path) -> list[np.ndarray]:
    """Every frame of a video as BGR uint8 ``[H, W, 3]``."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


def encode_h264(path: Path, frames: list[np.ndarray], fps: int = 30, gop: int = 8, bframes: int = 3,
                open_gop: bool = False, faststart: bool = False) -> Path:
    """Write BGR frames as an H.264 MP4 (yuv420p): a keyframe every ``gop`` frames, up to
    ``bframes`` B-frames in a row, the index at the end unless ``faststart``."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w", options={"movflags": "+faststart"} if faststart else {}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        params = "open-gop=1:scenecut=0" if open_gop else "scenecut=0"
        stream.options = {"crf": "28", "preset": "veryfast", "g": str(gop), "keyint_min": str(gop),
                          "bf": str(bframes), "x264-params": params}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _packets(path: Path) -> tuple[list[av.Packet], av.container.InputContainer]:
    container = av.open(str(path))
    return [p for p in container.demux(container.streams.video[0]) if p.size > 0], container


def _write_packets(src: av.container.InputContainer, dst: Path, packets: list[av.Packet], shift: int,
                   options: dict[str, str] | None = None) -> None:
    with av.open(str(dst), "w", options=options or {}) as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        for packet in packets:
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = stream
            out.mux(packet)


def cut_copy(src: Path, dst: Path, at_s: float) -> int:
    """Cut ``src`` at ``at_s`` seconds without re-encoding, the way a phone trims: packets from the
    keyframe at or before the cut, shifted so the frame at ``at_s`` is at time 0, and an edit list
    that starts presentation there. Returns how many frames before the cut were copied (hidden)."""
    packets, container = _packets(src)
    with container:
        time_base = container.streams.video[0].time_base
        cut = int(round(at_s / time_base))
        key = max(p.pts for p in packets if p.is_keyframe and p.pts <= cut)
        start = next(i for i, p in enumerate(packets) if p.is_keyframe and p.pts == key)
        kept = packets[start:]
        hidden = sum(1 for p in kept if p.pts < cut)
        _write_packets(container, dst, kept, cut)
    return hidden


def cut_at_packet(src: Path, dst: Path, first_packet: int) -> None:
    """Copy the packets of ``src`` from the ``first_packet``-th (decode order) on, timestamps
    shifted to start at 0, without an edit list: frames before the next keyframe cannot decode."""
    packets, container = _packets(src)
    with container:
        kept = packets[first_packet:]
        _write_packets(container, dst, kept, min(p.dts for p in kept), {"use_editlist": "0"})


def truncate(src: Path, dst: Path, fraction: float) -> Path:
    """The first ``fraction`` of the bytes of ``src``."""
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def _exif_orientation_segment(orientation: int) -> bytes:
    """A JPEG APP1 segment holding a minimal big-endian EXIF block with one tag: Orientation."""
    entry = struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)  # tag, SHORT, count 1, value
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1) + entry + struct.pack(">I", 0)
    payload = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def jpeg_with_orientation(path: Path, stored_bgr: np.ndarray, orientation: int) -> Path:
    """Write ``stored_bgr`` as a JPEG whose EXIF says how to turn it for display (6: turn 90
    degrees clockwise, 8: 90 counter-clockwise, 3: 180)."""
    ok, jpeg = cv2.imencode(".jpg", stored_bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    data = jpeg.tobytes()
    path.write_bytes(data[:2] + _exif_orientation_segment(orientation) + data[2:])
    return path


def side_by_side_people(frames: list[np.ndarray], left: int, right: int) -> np.ndarray:
    """A picture of more people than one frame holds: two frames of the office clip next to each
    other (each shows two people walking apart)."""
    return np.hstack([frames[left], frames[right]])
