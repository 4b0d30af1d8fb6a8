"""The rendered pictures: each original frame with its 2D skeletons beside the 3D panel.

* a video becomes an H.264 MP4 (:func:`render_video`). Frames stream through: one decoded frame in, one
  encoded frame out; the whole video is never held in memory. The output has exactly the input's frame
  count; constant-rate input keeps its average rate, variable-rate input keeps its frame times (pts in
  1/90000 s). Each picture is drawn into one reused canvas (frame on the left, 3D panel on the right) and
  handed to the encoder as YUV 4:2:0 converted by OpenCV (a third of the CPU of FFmpeg's own
  conversion, and closer to the drawn colours); the encoder settings are :data:`ENCODER`, chosen with
  ``bench/renderer.py --encoder-settings``. Decoding runs on a thread a few frames ahead of the drawing and
  encoding on a thread a few frames behind it (:mod:`.threaded`), so the three use both cores;
* a still image becomes a PNG (:func:`render_still`);
* every job gets a small JPEG thumbnail (:func:`thumbnail_jpeg`, longer side :data:`THUMBNAIL_SIDE` px) of
  the picture at :func:`thumbnail_frame`.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass
from fractions import Fraction

import av
import cv2
import numpy as np

from hpe3d.v1 import common_pb2
from services.common.video_reader import decoded_frames, frame_rotation_cw, open_video, upright_bgr

from .draw import View3D, draw_skeleton_2d
from .pose_data import PoseTimeline
from .threaded import Behind, read_ahead

MAX_HEIGHT = 720
VFR_TIME_BASE = Fraction(1, 90000)
THUMBNAIL_SIDE = 320
THUMBNAIL_QUALITY = 85
#: Frames the decoding thread may run ahead of the drawing, and the encoding thread lag behind it (memory:
#: this many decoded frames and this many YUV pictures per render in flight)
RENDER_QUEUE_DEPTH = 2


@dataclass(frozen=True)
class EncoderSettings:
    """libx264 settings of the rendered video: ``preset`` and ``crf`` as x264 names them, ``threads`` 0 = x264's
    own choice."""

    preset: str = "ultrafast"
    crf: int = 23
    threads: int = 0


#: Chosen by ``bench/renderer.py --encoder-settings`` (CPU ms per frame against file size; see the README).
ENCODER = EncoderSettings()


def output_layout(width: int, height: int, max_height: int = MAX_HEIGHT) -> tuple[int, int, int]:
    """(frame width, frame height, panel side) of the output, in pixels: the frame scaled so its
    height is at most ``max_height``, both even, and a square 3D panel of the same height."""
    scale = min(1.0, max_height / height)
    h = max(2, int(height * scale) // 2 * 2)
    w = max(2, int(width * h / height) // 2 * 2)
    return w, h, h


def build_view(info: common_pb2.VideoInfo, timeline: PoseTimeline, panel: int) -> View3D:
    """The 3D panel's camera for the whole render: it follows the people present in each frame."""
    joints = []
    for index in range(info.frame_count):
        present = [p.world for p in timeline.persons(index) if p.world is not None]
        joints.append(np.concatenate(present) if present else np.zeros((0, 3)))
    return View3D.following(panel, joints, info.fps)


def compose_frame(frame_bgr: np.ndarray, index: int, timeline: PoseTimeline, view: View3D,
                  scale: float) -> np.ndarray:
    """The output picture of frame ``index``: ``frame_bgr`` (already scaled by ``scale`` from original
    pixels) with every person's 2D skeleton, then the 3D panel to its right, as a new array."""
    height, width = frame_bgr.shape[:2]
    canvas = np.empty((height, width + view.size, 3), np.uint8)
    canvas[:, :width] = frame_bgr
    return compose_into(canvas, width, index, timeline, view, scale)


def compose_into(canvas: np.ndarray, width: int, index: int, timeline: PoseTimeline, view: View3D,
                 scale: float) -> np.ndarray:
    """Draw frame ``index``'s output picture in place on ``canvas`` ``[H, width + panel, 3]``, whose left
    ``width`` columns already hold the frame (scaled by ``scale`` from original pixels): every person's 2D
    skeleton on the frame, the 3D panel over the right columns. Returns ``canvas``."""
    picture = canvas[:, :width]
    persons = timeline.persons(index)
    for p in persons:
        if p.keypoints_2d is not None:
            draw_skeleton_2d(picture, p.keypoints_2d, p.track_id, scale)
    view.render(index, [(p.track_id, p.world) for p in persons if p.world is not None],
                timeline.pelvis_trails(index, view.trail_frames), out=canvas[:, width:])
    return canvas


def thumbnail_frame(info: common_pb2.VideoInfo, timeline: PoseTimeline) -> int:
    """The frame shown in the thumbnail: one with the most persons in 3D, the nearest to the middle."""
    counts = np.array([sum(p.world is not None for p in timeline.persons(i)) for i in range(info.frame_count)])
    best = np.flatnonzero(counts == counts.max())
    return int(best[np.argmin(np.abs(best - (info.frame_count - 1) / 2))])


def thumbnail_jpeg(picture_bgr: np.ndarray, side: int = THUMBNAIL_SIDE) -> bytes:
    """``picture_bgr`` scaled so its longer side is ``side`` px (area interpolation), as JPEG bytes."""
    h, w = picture_bgr.shape[:2]
    scale = side / max(h, w)
    small = cv2.resize(picture_bgr, (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, THUMBNAIL_QUALITY])
    if not ok:
        raise RuntimeError("JPEG encoding of the thumbnail failed")
    return data.tobytes()


def _upright_frames(video_path: str, width: int, height: int) -> Iterator[np.ndarray]:
    container, stream = open_video(video_path)
    with container:
        rotation = None
        for frame in decoded_frames(container, stream):
            if rotation is None:
                rotation = frame_rotation_cw(frame, stream)
            yield upright_bgr(frame, rotation, width, height)


def compose_at(video_path: str, info: common_pb2.VideoInfo, timeline: PoseTimeline, index: int) -> np.ndarray:
    """The output picture of frame ``index`` alone (decodes up to it; the last decodable frame when the
    file holds fewer)."""
    width, height, panel = output_layout(info.width, info.height)
    picture = None
    for n, frame in enumerate(_upright_frames(video_path, width, height)):
        picture = frame
        if n >= index:
            break
    if picture is None:
        raise ValueError(f"{video_path}: no decodable frame")
    return compose_frame(picture, min(index, info.frame_count - 1), timeline,
                         build_view(info, timeline, panel), height / info.height)


def render_still(image_path: str, info: common_pb2.VideoInfo, timeline: PoseTimeline) -> tuple[bytes, bytes]:
    """(PNG, thumbnail JPEG) of a still image: the photo with its 2D skeletons beside the 3D panel."""
    picture = compose_at(image_path, info, timeline, 0)
    ok, png = cv2.imencode(".png", picture)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return png.tobytes(), thumbnail_jpeg(picture)


def render_video(video_path: str, info: common_pb2.VideoInfo, timeline: PoseTimeline, out_path: str,
                 encoder_settings: EncoderSettings = ENCODER, every: int = 25,
                 thumbnail: list | None = None) -> Iterator[int]:
    """Write the rendered H.264 MP4 to ``out_path``; yields the number of frames done every
    ``every`` frames and once at the end. When ``thumbnail`` is a list, the JPEG bytes of the
    :func:`thumbnail_frame` picture are appended to it."""
    width, height, panel = output_layout(info.width, info.height)
    scale = height / info.height
    view = build_view(info, timeline, panel)
    thumb_at = thumbnail_frame(info, timeline) if thumbnail is not None else -1
    times = list(info.timestamps_s)
    vfr = info.variable_frame_rate and len(times) == info.frame_count
    rate = Fraction(info.fps).limit_denominator(1001) if info.fps > 0 else Fraction(30)
    canvas = np.empty((height, width + panel, 3), np.uint8)
    with av.open(out_path, "w", options={"movflags": "+faststart"}) as out:
        encoder = open_encoder(out, rate, width + panel, height, encoder_settings)
        if vfr:
            encoder.codec_context.time_base = VFR_TIME_BASE
        done, last = 0, None
        with ExitStack() as stack:
            encoding = stack.enter_context(Behind(lambda item: _encode(out, encoder, item[0], item[1], times, vfr),
                                                  depth=RENDER_QUEUE_DEPTH, name="render-encode"))
            frames = stack.enter_context(closing(read_ahead(_upright_frames(video_path, width, height),
                                                            depth=RENDER_QUEUE_DEPTH, name="render-decode")))
            for frame in frames:
                if done >= info.frame_count:
                    break
                canvas[:, :width] = frame
                compose_into(canvas, width, done, timeline, view, scale)
                if done == thumb_at:
                    thumbnail.append(thumbnail_jpeg(canvas))
                last = yuv420(canvas)
                encoding.put((last, done))
                done += 1
                if done % every == 0:
                    yield done
            while done < info.frame_count and last is not None:  # never fewer frames than probed
                if done == thumb_at:
                    thumbnail.append(thumbnail_jpeg(canvas))
                encoding.put((last, done))
                done += 1
            encoding.finish()
        for packet in encoder.encode():
            out.mux(packet)
    yield done


def open_encoder(out: av.container.OutputContainer, rate: Fraction, width: int, height: int,
                 settings: EncoderSettings = ENCODER) -> av.video.stream.VideoStream:
    """An H.264 (libx264, yuv420p) stream of ``width`` x ``height`` at ``rate`` in ``out``."""
    encoder = out.add_stream("libx264", rate=rate)
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.options = {"preset": settings.preset, "crf": str(settings.crf)}
    if settings.threads:
        encoder.codec_context.thread_count = settings.threads
    encoder.thread_type = "AUTO"
    return encoder


def yuv420(picture_bgr: np.ndarray) -> np.ndarray:
    """``picture_bgr`` [H, W, 3] (even H and W) as planar YUV 4:2:0 ``[H * 3 / 2, W]`` (BT.601, limited range,
    as the encoder's own conversion)."""
    return cv2.cvtColor(picture_bgr, cv2.COLOR_BGR2YUV_I420)


def _encode(out, encoder, planes: np.ndarray, index: int, times: list[float], vfr: bool) -> None:
    frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
    if vfr:
        frame.pts = int(round((times[index] - times[0]) / VFR_TIME_BASE))
        frame.time_base = VFR_TIME_BASE
    else:
        frame.pts = index
        frame.time_base = 1 / encoder.codec_context.framerate if encoder.codec_context.framerate else None
    for packet in encoder.encode(frame):
        out.mux(packet)
