"""``probe_video``: what a video file holds (size after rotation, rate, exact frame count, times).

The frame count comes from demuxing every packet (fast: no decoding), because containers often
carry no count or a wrong one (a truncated MP4 still claims all its frames). Only the last group
of pictures is decoded, to check that its frames really decode, so ``frame_count`` equals the
number of frames ``decode_segment`` can yield.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache

import numpy as np

from hpe3d.v1 import common_pb2
from services.common.errors import InvalidInput

from services.common.rotation import rotated_size
from services.common.video_reader import decoded_frames, frame_rotation_cw, open_video


@dataclass(frozen=True)
class VideoInfo:
    """Facts about one video. Sizes in pixels after rotation; times in seconds."""

    width: int
    height: int
    fps: float                      # average frame rate, frames per second
    frame_count: int                # frames that decode
    duration_s: float
    rotation_deg: int               # clockwise display rotation applied to frames: 0/90/180/270
    codec: str
    variable_frame_rate: bool
    timestamps_s: tuple[float, ...]  # presentation time of every frame (pts * time_base)
    frame_pts: tuple[int, ...] = field(repr=False, default=())  # the same, in stream time-base ticks
    time_base: Fraction = field(repr=False, default=Fraction(1, 1))

    def to_proto(self) -> common_pb2.VideoInfo:
        return common_pb2.VideoInfo(
            width=self.width, height=self.height, fps=self.fps, frame_count=self.frame_count,
            duration_s=self.duration_s, rotation_deg=self.rotation_deg, codec=self.codec,
            variable_frame_rate=self.variable_frame_rate, timestamps_s=list(self.timestamps_s))


def probe_video(path: str) -> VideoInfo:
    """Probe the video at ``path`` (cached per file path, size and modification time).
    Raises ``InvalidInput`` for anything that is not a decodable video."""
    st = os.stat(path)
    return _probe_cached(os.path.abspath(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=64)
def _probe_cached(path: str, _size: int, _mtime_ns: int) -> VideoInfo:
    container, stream = open_video(path)
    with container:
        packets = [(p.pts if p.pts is not None else p.dts, p.is_keyframe)
                   for p in container.demux(stream) if p.size > 0]
        if packets and all(pts is not None for pts, _ in packets):
            all_pts = sorted(pts for pts, _ in packets)
            keyframes = sorted({pts for pts, key in packets if key}) or [all_pts[0]]
            count, rotation_cw, first = _count_decodable(container, stream, all_pts, keyframes)
            frame_pts = all_pts[:count]
        else:  # packets without timestamps: decode everything once and count
            container.seek(0)
            frame_pts, first = [], None
            for i, frame in enumerate(decoded_frames(container, stream)):
                first = first or frame
                frame_pts.append(frame.pts if frame.pts is not None else i)
            rotation_cw = frame_rotation_cw(first, stream) if first else 0
        if not frame_pts:
            raise InvalidInput("not a video: no frame of the video stream could be decoded")
        time_base = stream.time_base or Fraction(1, 1)
        stored_w = first.width if first else stream.codec_context.width
        stored_h = first.height if first else stream.codec_context.height
        codec = stream.codec_context.name
        average_rate = stream.average_rate
    times = np.asarray(frame_pts, dtype=np.float64) * float(time_base)
    width, height = rotated_size(stored_w, stored_h, rotation_cw)
    fps, vfr, duration = _timing(times, float(average_rate) if average_rate else 0.0)
    return VideoInfo(width=width, height=height, fps=fps, frame_count=len(frame_pts),
                     duration_s=duration, rotation_deg=rotation_cw, codec=codec,
                     variable_frame_rate=vfr, timestamps_s=tuple(float(t) for t in times),
                     frame_pts=tuple(int(p) for p in frame_pts), time_base=Fraction(time_base))


def _count_decodable(container, stream, all_pts: list[int], keyframes: list[int]):
    """Frames that decode, checking only the last group of pictures (the earlier ones decoded if
    the demuxer read them whole). Walks back one keyframe at a time if a group yields nothing.
    Returns (count, clockwise rotation, one decoded frame)."""
    for key_pts in reversed(keyframes):
        tail = [f for f in decoded_frames(container, stream, seek_pts=key_pts)
                if f.pts is not None and f.pts >= key_pts]
        if tail:
            before = sum(1 for p in all_pts if p < key_pts)
            return before + len(tail), frame_rotation_cw(tail[0], stream), tail[0]
    return 0, 0, None


def _timing(times: np.ndarray, average_rate: float) -> tuple[float, bool, float]:
    """(fps, variable frame rate?, duration in s) from frame times in seconds. A stream is VFR when
    a frame interval differs from the median interval by more than 10 %."""
    if times.size < 2:
        fps = average_rate or 1.0
        return fps, False, 1.0 / fps
    intervals = np.diff(times)
    median = float(np.median(intervals))
    vfr = bool(np.max(np.abs(intervals - median)) > 0.1 * median) if median > 0 else False
    span = float(times[-1] - times[0])
    fps = (times.size - 1) / span if span > 0 else (average_rate or 1.0)
    if average_rate and not vfr:
        fps = average_rate
    return fps, vfr, span + (median if median > 0 else 1.0 / fps)
