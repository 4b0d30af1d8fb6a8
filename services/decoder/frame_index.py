"""``index_shown_frames``: which frames of a video a player shows, by presentation timestamp.

The frames hpe3d counts, decodes and times are exactly the frames a player shows. Three kinds of
packets in a file are never shown and must not be counted:

* packets before the start of an MP4/MOV edit list (a clip trimmed on a phone, or cut with
  ``ffmpeg -ss T -c copy``, keeps the packets from the keyframe before the cut; FFmpeg's demuxer
  flags them as discard, with timestamps before the edit's start);
* packets that cannot decode because their reference frames are absent: non-key packets before
  the first keyframe, and B-frames shown before the first keyframe of an open group of pictures;
* packets of a truncated file past its last decodable frame.

Demuxing every packet is fast (no decoding); decoding is done only where frames may be lost: the
first group of pictures when the file does not start cleanly, and the last group of pictures
(walking back a group at a time when it yields nothing). Timestamps are in the stream's time base.

Seeking: FFmpeg's MP4 demuxer seeks by decode timestamp (dts), which with B-frames runs ahead of
the presentation timestamp, so seeking to a frame's pts may land on the keyframe *after* it.
Every seek here therefore targets a keyframe's dts (``Keyframe.seek_ts``).
"""
from __future__ import annotations

from dataclasses import dataclass

from services.common.errors import InvalidInput
from services.common.video_reader import decoded_frames, frame_rotation_cw, open_video


@dataclass(frozen=True)
class PacketFacts:
    """One demuxed packet: presentation timestamp (dts when the container gives no pts), decode
    timestamp (pts when the container gives no dts), keyframe flag, and whether the container
    marks it as not shown (before an edit list)."""

    pts: int | None
    dts: int | None
    keyframe: bool
    discard: bool


@dataclass(frozen=True, order=True)
class Keyframe:
    """A keyframe's presentation timestamp and the timestamp to seek to so that decoding
    starts at (or before) it."""

    pts: int
    seek_ts: int


@dataclass(frozen=True)
class FrameLook:
    """What the decoded frames look like: stored size in pixels and clockwise display rotation."""

    stored_width: int
    stored_height: int
    rotation_cw: int


@dataclass(frozen=True)
class ShownFrames:
    """The frames a player shows, and how they compare with what the container announces."""

    pts: tuple[int, ...]        # presentation timestamps, ascending, stream time-base ticks
    keyframes: tuple[Keyframe, ...]  # every keyframe, by pts
    look: FrameLook
    announced: int              # shown frames the container's index announces (discarded ones excluded)
    truncated: bool             # the data ends before the index does (packets announced but absent)


def read_packets(path: str) -> tuple[list[PacketFacts], int]:
    """Every non-empty packet of the first video stream in decode order, and the number of
    frames the container's index announces (0 when it announces none)."""
    container, stream = open_video(path)
    with container:
        announced = stream.frames or 0
        packets = [PacketFacts(p.pts if p.pts is not None else p.dts, p.dts if p.dts is not None else p.pts,
                               bool(p.is_keyframe), bool(p.is_discard))
                   for p in container.demux(stream) if p.size > 0]
    return packets, announced


def _decode_range(path: str, start: Keyframe | None, stop_pts: int | None,
                  hidden: set[int]) -> tuple[list[int], FrameLook | None]:
    """Presentation timestamps of the frames that decode from keyframe ``start`` (from the
    beginning when None), keeping those at or after it, before ``stop_pts`` and not in ``hidden``;
    and the look of the first such frame."""
    shown: list[int] = []
    look = None
    container, stream = open_video(path)
    with container:
        frames = decoded_frames(container, stream, start.seek_ts if start is not None else None)
        for index, frame in enumerate(frames):
            pts = frame.pts if frame.pts is not None else index
            if stop_pts is not None and pts >= stop_pts:
                break
            if (start is not None and pts < start.pts) or pts in hidden:
                continue
            if look is None:
                look = FrameLook(frame.width, frame.height, frame_rotation_cw(frame, stream))
            shown.append(pts)
    return shown, look


def index_shown_frames(path: str) -> ShownFrames:
    """The frames of the video at ``path`` a player shows. Raises ``InvalidInput`` when none
    decodes (or the file is not a video)."""
    packets, index_frames = read_packets(path)
    if not packets:
        raise InvalidInput("not a video: the video stream holds no frames")
    hidden = {p.pts for p in packets if p.discard and p.pts is not None}
    listed = sorted(p.pts for p in packets if not p.discard and p.pts is not None)
    announced = max(index_frames - sum(p.discard for p in packets), len(listed)) if index_frames else len(listed)
    truncated = index_frames > len(packets)
    keys = sorted({Keyframe(p.pts, p.dts) for p in packets if p.keyframe and p.pts is not None})

    if any(p.pts is None for p in packets) or not keys:
        # packets without timestamps, or no keyframe flags: decode everything once
        shown, look = _decode_range(path, None, None, hidden)
    else:
        shown, look = _shown_by_groups(path, packets, listed, keys, hidden)
    if not shown or look is None:
        raise InvalidInput("not a video: no frame of the video stream could be decoded")
    return ShownFrames(pts=tuple(sorted(shown)), keyframes=tuple(keys), look=look, announced=announced,
                       truncated=truncated)


def _shown_by_groups(path: str, packets: list[PacketFacts], listed: list[int], keys: list[Keyframe],
                     hidden: set[int]) -> tuple[list[int], FrameLook | None]:
    """Shown frames from the packet list, decoding only the groups of pictures that may lose
    frames: the first (when the file does not start with a keyframe, or shows frames before its
    first keyframe) and the last."""
    first_key = keys[0].pts
    unclean_start = not packets[0].keyframe or any(pts < first_key for pts in listed)
    head: list[int] = []
    look = None
    trusted_from = None  # listed frames at or after this pts are taken from the packet list
    if unclean_start:
        if len(keys) < 2:
            return _decode_range(path, None, None, hidden)
        trusted_from = keys[1].pts
        head, look = _decode_range(path, None, trusted_from, hidden)
    tail_keys = [k for k in keys if trusted_from is None or k.pts >= trusted_from]
    for key in reversed(tail_keys):
        tail, tail_look = _decode_range(path, key, None, hidden)
        if tail:
            middle = [p for p in listed if (trusted_from is None or p >= trusted_from) and p < key.pts]
            return head + middle + tail, look or tail_look
    return head, look
