"""The rendered MP4: each original frame with its 2D skeletons beside the 3D view, as H.264.

Frames stream through: one decoded frame in, one encoded frame out; the whole video is never held
in memory. The output has exactly the input's frame count; constant-rate input keeps its average
rate, variable-rate input keeps its frame times (pts in 1/90000 s).
"""
from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np

from hpe3d.v1 import common_pb2
from services.common.video_reader import decoded_frames, frame_rotation_cw, open_video, upright_bgr

from .draw import View3D, draw_skeleton_2d
from .pose_data import PoseTimeline

MAX_HEIGHT = 720
VFR_TIME_BASE = Fraction(1, 90000)


def output_layout(width: int, height: int, max_height: int = MAX_HEIGHT) -> tuple[int, int, int]:
    """(frame width, frame height, panel side) of the output, in pixels: the frame scaled so its
    height is at most ``max_height``, both even, and a square 3D panel of the same height."""
    scale = min(1.0, max_height / height)
    h = max(2, int(height * scale) // 2 * 2)
    w = max(2, int(width * h / height) // 2 * 2)
    return w, h, h


def compose_frame(frame_bgr: np.ndarray, persons, view: View3D, scale: float) -> np.ndarray:
    """The output picture: ``frame_bgr`` (already scaled by ``scale`` from original pixels) with
    every person's 2D skeleton, then the 3D panel to its right. Draws on ``frame_bgr`` in place."""
    for p in persons:
        if p.keypoints_2d is not None:
            draw_skeleton_2d(frame_bgr, p.keypoints_2d, p.track_id, scale)
    panel = view.render([(p.track_id, p.grounded) for p in persons if p.grounded is not None])
    return np.hstack([frame_bgr, panel])


def render_video(video_path: str, info: common_pb2.VideoInfo, timeline: PoseTimeline, out_path: str,
                 preset: str = "ultrafast", crf: int = 23, every: int = 25) -> Iterator[int]:
    """Write the rendered H.264 MP4 to ``out_path``; yields the number of frames done every
    ``every`` frames and once at the end."""
    width, height, panel = output_layout(info.width, info.height)
    scale = height / info.height
    view = View3D.fitted(panel, timeline.all_grounded())
    times = list(info.timestamps_s)
    vfr = info.variable_frame_rate and len(times) == info.frame_count
    rate = Fraction(info.fps).limit_denominator(1001) if info.fps > 0 else Fraction(30)
    container, stream = open_video(video_path)
    with container, av.open(out_path, "w", options={"movflags": "+faststart"}) as out:
        encoder = out.add_stream("libx264", rate=rate)
        encoder.width, encoder.height, encoder.pix_fmt = width + panel, height, "yuv420p"
        encoder.options = {"preset": preset, "crf": str(crf)}
        encoder.thread_type = "AUTO"
        if vfr:
            encoder.codec_context.time_base = VFR_TIME_BASE
        done, rotation, last = 0, None, None
        for frame in decoded_frames(container, stream):
            if done >= info.frame_count:
                break
            if rotation is None:
                rotation = frame_rotation_cw(frame, stream)
            picture = compose_frame(upright_bgr(frame, rotation, width, height),
                                    timeline.persons(done), view, scale)
            _encode(out, encoder, picture, done, times, vfr)
            last = picture
            done += 1
            if done % every == 0:
                yield done
        while done < info.frame_count and last is not None:  # never fewer frames than probed
            _encode(out, encoder, last, done, times, vfr)
            done += 1
        for packet in encoder.encode():
            out.mux(packet)
    yield done


def _encode(out, encoder, picture: np.ndarray, index: int, times: list[float], vfr: bool) -> None:
    frame = av.VideoFrame.from_ndarray(picture, format="bgr24")
    if vfr:
        frame.pts = int(round((times[index] - times[0]) / VFR_TIME_BASE))
        frame.time_base = VFR_TIME_BASE
    else:
        frame.pts = index
        frame.time_base = 1 / encoder.codec_context.framerate if encoder.codec_context.framerate else None
    for packet in encoder.encode(frame):
        out.mux(packet)
