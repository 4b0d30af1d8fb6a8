"""``decode_segment``: a run of frames, upright, at the working size, as JPEG."""
from __future__ import annotations

import itertools
from collections.abc import Iterator

import cv2
import numpy as np

from hpe3d.v1 import common_pb2
from services.common.cancellation import NEVER, CancelToken
from services.common.errors import InvalidInput
from services.common.video_reader import decoded_frames, frame_rotation_cw, open_video, upright_bgr

from .probe import probe_video

JPEG_QUALITY = 90


def working_dimensions(width: int, height: int, working_size: int) -> tuple[int, int]:
    """(width, height) scaled so the longer side is at most ``working_size`` pixels, aspect kept,
    both even (never upscaled; never below 2)."""
    scale = min(1.0, working_size / max(width, height)) if working_size > 0 else 1.0
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def decode_segment(path: str, start_frame: int, frame_count: int, working_size: int,
                   cancel: CancelToken = NEVER) -> common_pb2.FrameSegment:
    """Frames ``[start_frame, start_frame + frame_count)`` of the video at ``path`` (clamped to its
    end), turned upright, resized so the longer side is at most ``working_size`` px, JPEG-coded.

    Frame numbers count the frames a player shows (``probe_video``'s frames: packets before an
    edit list or without their reference frames are not frames). Seeks to the keyframe at or
    before the first frame (reads from the start for frame 0) and decodes forward from there.
    A photo is a 1-frame video. Raises ``InvalidInput`` for a bad range or a file that is neither
    a video nor a photo, and ``CallCancelled`` (checked before each frame) once ``cancel`` is."""
    info = probe_video(path)
    if start_frame < 0 or frame_count <= 0:
        raise InvalidInput(f"bad frame range: start_frame={start_frame}, frame_count={frame_count}")
    if start_frame >= info.frame_count:
        raise InvalidInput(f"start_frame {start_frame} is beyond the video's {info.frame_count} frames")
    stop_frame = min(info.frame_count, start_frame + frame_count)
    index_of_pts = {pts: i for i, pts in enumerate(info.frame_pts)}
    width, height = working_dimensions(info.width, info.height, working_size)
    segment = common_pb2.FrameSegment(start_frame=start_frame, width=width, height=height,
                                      source_width=info.width, source_height=info.height)
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    frames = _upright_frames(path, info.seek_target(start_frame), index_of_pts, start_frame, stop_frame,
                             width, height)
    first = next(frames, None)
    if first is not None and first[0] > start_frame:  # the seek landed after the first frame
        frames.close()
        frames = _upright_frames(path, None, index_of_pts, start_frame, stop_frame, width, height)
        first = next(frames, None)
    for index, image in cancel.each(itertools.chain([first] if first is not None else [], frames)):
        ok, jpeg = cv2.imencode(".jpg", image, params)
        if not ok:
            raise RuntimeError(f"JPEG encoding of frame {index} failed")
        segment.jpeg.append(jpeg.tobytes())
        segment.timestamps_s.append(info.timestamps_s[index])
    expected = stop_frame - start_frame
    if len(segment.jpeg) != expected:
        raise InvalidInput(f"frames {start_frame}..{stop_frame - 1}: only {len(segment.jpeg)} of "
                           f"{expected} decoded (damaged video?)")
    return segment


def _upright_frames(path: str, seek_ts: int | None, index_of_pts: dict[int, int], start_frame: int,
                    stop_frame: int, width: int, height: int) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, upright BGR picture scaled to ``width`` x ``height``) of the frames in
    ``[start_frame, stop_frame)`` that decode after seeking to ``seek_ts`` (from the start: None)."""
    container, stream = open_video(path)
    with container:
        rotation = None
        for frame in decoded_frames(container, stream, seek_ts):
            index = index_of_pts.get(frame.pts)
            if index is None or index < start_frame:
                continue
            if index >= stop_frame:
                break
            if rotation is None:
                rotation = frame_rotation_cw(frame, stream)
            yield index, upright_bgr(frame, rotation, width, height)
