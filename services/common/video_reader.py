"""Reading frames of a video file with PyAV: opening with clear errors, seeking, upright frames.

Plain functions shared by ``probe_video`` and ``decode_segment`` (and by the renderer, which reads
the original video): a frame's index is the position of its presentation timestamp (pts) among
the sorted pts of the frames a player shows, so seeking by pts and counting frames agree. A still
image opens the same way and decodes to one frame (its EXIF orientation is the frame's display
rotation).
"""
from __future__ import annotations

import logging
from collections.abc import Iterator

import av
import numpy as np

from services.common.errors import InvalidInput

from .mp4_index import index_missing
from .rotation import apply_rotation, clockwise_from_display_ccw

log = logging.getLogger(__name__)

MISSING_INDEX = ("truncated: the index is missing (the MP4/MOV file ends before its 'moov' box, "
                 "so its frames cannot be located; upload the complete file)")


def open_video(path: str) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    """Open ``path`` (a video, or a still image: JPEG, PNG, WebP, ...) and return its container
    and first video stream (multi-threaded decoding). Raises ``InvalidInput``: "truncated: the
    index is missing ..." for an MP4/MOV cut before its index, "not a video: ..." for empty files,
    other non-media files and files with no video stream."""
    try:
        container = av.open(path, "r")
    except av.FFmpegError as exc:
        if index_missing(path):
            raise InvalidInput(MISSING_INDEX) from exc
        raise InvalidInput(f"not a video: {_reason(exc)}") from exc
    if not container.streams.video:
        container.close()
        raise InvalidInput("not a video: the file has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def is_still_image(container: av.container.InputContainer) -> bool:
    """True when FFmpeg opened the file with an image demuxer (a photo: JPEG, PNG, WebP, BMP,
    TIFF, ...), whose first frame is the picture. Animated formats with their own demuxer (GIF)
    are videos."""
    names = container.format.name.split(",")
    # image2, image2pipe, jpeg_pipe, png_pipe, webp_pipe, ...
    return any(name.startswith("image2") or name.endswith("_pipe") for name in names)


def _reason(exc: BaseException) -> str:
    """FFmpeg's message without the local temp path (which means nothing to a caller)."""
    text = getattr(exc, "strerror", None) or str(exc)
    return text or type(exc).__name__


def decoded_frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                   seek_ts: int | None = None) -> Iterator[av.VideoFrame]:
    """Frames in presentation order, from the keyframe at or before timestamp ``seek_ts`` (stream
    time base; from the start when None). FFmpeg's MP4 demuxer compares ``seek_ts`` with decode
    timestamps, so pass a keyframe's dts to start at that keyframe. Frames the container hides
    (before an edit list) and frames missing their references are not yielded (the decoder drops
    them). Stops quietly at the first undecodable data: a truncated file ends there."""
    if seek_ts is not None:
        container.seek(seek_ts, stream=stream, backward=True, any_frame=False)
    try:
        for packet in container.demux(stream):
            for frame in packet.decode():
                yield frame
    except av.FFmpegError as exc:
        log.warning("decoding stopped early: %s", _reason(exc))


def frame_rotation_cw(frame: av.VideoFrame, stream: av.video.stream.VideoStream) -> int:
    """Clockwise display rotation of a decoded frame: its display matrix, else the stream's
    legacy ``rotate`` tag."""
    if frame.rotation:
        return clockwise_from_display_ccw(frame.rotation)
    tag = stream.metadata.get("rotate")
    try:
        return int(round(float(tag))) % 360 if tag else 0
    except ValueError:
        return 0


def upright_bgr(frame: av.VideoFrame, rotation_cw: int, width: int | None = None,
                height: int | None = None) -> np.ndarray:
    """The frame as BGR uint8 ``[H, W, 3]``, scaled to the display size ``width`` x ``height``
    (after rotation; None keeps the stored size) with area interpolation, then turned upright."""
    if width and height:
        stored_w, stored_h = (height, width) if rotation_cw in (90, 270) else (width, height)
        if (stored_w, stored_h) != (frame.width, frame.height):
            frame = frame.reformat(width=stored_w, height=stored_h, interpolation="AREA")
    return apply_rotation(frame.to_ndarray(format="bgr24"), rotation_cw)
