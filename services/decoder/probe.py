"""``probe_video``: what a video file (or a photo) holds: size after rotation, rate, the exact
frames a player shows and their times, and what the user should know about the file.

The frames are those ``frame_index.index_shown_frames`` finds (edit lists, undecodable leading
frames and truncation handled), so ``frame_count`` equals the number of frames ``decode_segment``
yields, and times run from 0 at the first shown frame. A photo (an image demuxer: JPEG, PNG,
WebP, ...) is one frame with fps and duration 0, turned upright by its EXIF orientation.
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
from services.common.video_reader import decoded_frames, frame_rotation_cw, is_still_image, open_video

from .frame_index import Keyframe, ShownFrames, index_shown_frames


@dataclass(frozen=True)
class VideoInfo:
    """Facts about one video or photo. Sizes in pixels after rotation; times in seconds."""

    width: int
    height: int
    fps: float                      # average frame rate, frames per second; 0 for a photo
    frame_count: int                # frames a player shows (all of which decode)
    duration_s: float               # 0 for a photo
    rotation_deg: int               # clockwise display rotation applied to frames: 0/90/180/270
    codec: str
    variable_frame_rate: bool
    timestamps_s: tuple[float, ...]  # presentation time of every frame, from 0 at the first shown frame
    frame_pts: tuple[int, ...] = field(repr=False, default=())  # the frames' pts in stream time-base ticks
    time_base: Fraction = field(repr=False, default=Fraction(1, 1))
    keyframes: tuple[Keyframe, ...] = field(repr=False, default=())  # where decoding can start, by pts
    still_image: bool = False
    announced_frame_count: int = 0  # frames the container announces (more than frame_count when truncated)
    warnings: tuple[str, ...] = ()  # facts the job should tell the user

    def seek_target(self, frame: int) -> int | None:
        """The timestamp to seek to so that decoding starts at or before frame ``frame``: the dts of
        the last keyframe shown at or before it; None (read from the start) for the first frames."""
        pts = self.frame_pts[frame]
        before = [k for k in self.keyframes if k.pts <= pts]
        return before[-1].seek_ts if before and frame > 0 else None

    def to_proto(self) -> common_pb2.VideoInfo:
        return common_pb2.VideoInfo(
            width=self.width, height=self.height, fps=self.fps, frame_count=self.frame_count,
            duration_s=self.duration_s, rotation_deg=self.rotation_deg, codec=self.codec,
            variable_frame_rate=self.variable_frame_rate, timestamps_s=list(self.timestamps_s),
            still_image=self.still_image, announced_frame_count=self.announced_frame_count,
            warnings=list(self.warnings))


def probe_video(path: str) -> VideoInfo:
    """Probe the video or photo at ``path`` (cached per file path, size and modification time).
    Raises ``InvalidInput`` for anything that is not a decodable video or image, with the reason
    (e.g. "truncated: the index is missing ..." for an MP4 cut before its index)."""
    st = os.stat(path)
    return _probe_cached(os.path.abspath(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=64)
def _probe_cached(path: str, _size: int, _mtime_ns: int) -> VideoInfo:
    container, stream = open_video(path)
    with container:
        codec = stream.codec_context.name
        average_rate = float(stream.average_rate) if stream.average_rate else 0.0
        time_base = Fraction(stream.time_base or Fraction(1, 1))
        if is_still_image(container):
            return _photo_info(container, stream, codec, time_base)
    shown = index_shown_frames(path)
    times = (np.asarray(shown.pts, dtype=np.float64) - shown.pts[0]) * float(time_base)
    width, height = rotated_size(shown.look.stored_width, shown.look.stored_height, shown.look.rotation_cw)
    fps, vfr, duration = _timing(times, average_rate)
    return VideoInfo(width=width, height=height, fps=fps, frame_count=len(shown.pts),
                     duration_s=duration, rotation_deg=shown.look.rotation_cw, codec=codec,
                     variable_frame_rate=vfr, timestamps_s=tuple(float(t) for t in times),
                     frame_pts=shown.pts, time_base=time_base, keyframes=shown.keyframes,
                     announced_frame_count=shown.announced,
                     warnings=tuple(_warnings(shown)))


def _photo_info(container, stream, codec: str, time_base: Fraction) -> VideoInfo:
    """A photo: its first picture, upright."""
    frame = next(iter(decoded_frames(container, stream)), None)
    if frame is None:
        raise InvalidInput("not an image: the picture could not be decoded")
    rotation = frame_rotation_cw(frame, stream)
    width, height = rotated_size(frame.width, frame.height, rotation)
    return VideoInfo(width=width, height=height, fps=0.0, frame_count=1, duration_s=0.0, rotation_deg=rotation,
                     codec=codec, variable_frame_rate=False, timestamps_s=(0.0,),
                     frame_pts=(frame.pts if frame.pts is not None else 0,), time_base=time_base,
                     still_image=True, announced_frame_count=1)


def _warnings(shown: ShownFrames) -> list[str]:
    """What a user should know about frames the file announces but does not show."""
    missing = shown.announced - len(shown.pts)
    if missing <= 0:
        return []
    if shown.truncated:
        return [f"truncated: {missing} of {shown.announced} announced frames were missing; "
                f"the job uses the {len(shown.pts)} frames the file holds"]
    return [f"{missing} of {shown.announced} frames in the file could not be decoded (no keyframe before "
            f"them, or damaged data) and were skipped; the job uses the {len(shown.pts)} frames that decode"]


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
